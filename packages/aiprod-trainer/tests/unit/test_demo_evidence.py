"""The demo's evidence checks: held-out loss drop and colour histograms against prompts."""

from __future__ import annotations

import numpy as np
import pytest

from aiprod_trainer.data.synthetic import PALETTE, ShapeClip, classify_pixels, render_clip
from aiprod_trainer.demo.evidence import color_check, failures, loss_check

PROMPT = "a red circle moving left on a blue background"


def clip_frames(color: str = "red", background: str = "blue") -> np.ndarray:
    clip = ShapeClip("circle", color, background, "left", 0.4, (0.7, 0.5), (0.3, 0.5))
    return render_clip(clip, width=32, height=32, frames=5)


def test_loss_check_passes_at_the_required_drop_and_fails_below() -> None:
    passing = loss_check(1.0, 0.7, required=0.30)
    assert passing.drop == pytest.approx(0.30)
    assert passing.passed
    failing = loss_check(1.0, 0.71, required=0.30)
    assert failing.drop == pytest.approx(0.29)
    assert not failing.passed
    assert "FAIL" in failing.describe()
    assert "29% lower" in failing.describe()
    assert failing.to_json() == {
        "untrained": 1.0,
        "trained": 0.71,
        "drop": pytest.approx(0.29),
        "required": 0.30,
        "passed": False,
    }


def test_loss_check_counts_a_higher_or_zero_baseline_as_no_drop() -> None:
    assert loss_check(1.0, 1.5).drop == pytest.approx(-0.5)
    assert not loss_check(1.0, 1.5).passed
    assert loss_check(0.0, 0.0).drop == 0.0


@pytest.mark.parametrize("required", [-0.1, 1.0])
def test_loss_check_rejects_a_requirement_outside_0_to_1(required: float) -> None:
    with pytest.raises(ValueError, match="required: expected a fraction"):
        loss_check(1.0, 0.5, required=required)


def test_rendered_clip_matches_its_prompt() -> None:
    check = color_check(clip_frames(), PROMPT)
    assert check.ranking[:2] == ("blue", "red")
    assert check.background_ok
    assert check.shape_ok
    assert check.passed
    assert check.fractions["blue"] > 0.8 > check.fractions["red"] > 0.05
    assert sum(check.fractions.values()) == pytest.approx(1.0)
    assert check.to_json()["dominant"] == ["blue", "red"]
    assert "[PASS]" in check.describe()


def test_wrong_background_fails_and_is_named() -> None:
    check = color_check(clip_frames(background="green"), PROMPT)
    assert not check.background_ok
    assert check.shape_ok
    assert not check.passed
    assert failures(None, [check]) == [
        f"{PROMPT!r}: background blue not dominant (found green, red)"
    ]


def test_wrong_shape_colour_fails_only_when_the_shape_is_checked() -> None:
    frames = clip_frames(color="yellow")
    strict = color_check(frames, PROMPT)
    assert strict.background_ok
    assert not strict.shape_ok
    assert not strict.passed
    assert "shape colour red" in failures(None, [strict])[0]
    lenient = color_check(frames, PROMPT, check_shape=False)
    assert lenient.passed
    assert "(not required)" in lenient.describe()
    assert failures(None, [lenient]) == []


def test_edge_blends_do_not_outvote_the_shape() -> None:
    frames = clip_frames(color="yellow")
    prompt = "a yellow circle moving left on a blue background"
    shape = np.all(frames == PALETTE["yellow"], axis=-1)
    ring = np.zeros_like(shape)
    for dy in range(-3, 4):
        for dx in range(-3, 4):
            ring |= np.roll(shape, (dy, dx), axis=(1, 2))
    blended = frames.copy()
    blended[ring & ~shape] = (150, 90, 170)  # a blend nearest magenta, but 99.5 away from it
    every_pixel = classify_pixels(blended)
    assert every_pixel["magenta"] > every_pixel["yellow"]  # counted naively, blends outvote
    check = color_check(blended, prompt)
    assert check.ranking[:2] == ("blue", "yellow")
    assert "magenta" not in check.ranking
    assert check.passed
    assert check.ambiguous == pytest.approx(1 - sum(check.fractions.values()))
    assert 0.1 < check.ambiguous < 0.3
    assert check.to_json()["ambiguous"] == check.ambiguous
    assert "ambiguous" in check.describe()


def test_single_colour_frame_has_no_shape_colour() -> None:
    frame = np.empty((8, 8, 3), dtype=np.uint8)
    frame[...] = PALETTE["blue"]
    check = color_check(frame, PROMPT)
    assert check.ranking == ("blue",)
    assert check.background_ok
    assert not check.shape_ok


def test_frames_without_rgb_pixels_are_refused() -> None:
    with pytest.raises(ValueError, match="frames: expected uint8 RGB pixels"):
        color_check(np.zeros((0, 4, 4, 3), dtype=np.uint8), PROMPT)
    with pytest.raises(ValueError, match="frames: expected uint8 RGB pixels"):
        color_check(np.zeros((4, 4), dtype=np.uint8), PROMPT)


def test_prompt_must_be_a_synthetic_caption() -> None:
    with pytest.raises(ValueError, match="expected 'a <color> <shape>"):
        color_check(clip_frames(), "a cat on a sofa")


def test_failures_lists_the_loss_first() -> None:
    bad = color_check(clip_frames(background="green"), PROMPT)
    lines = failures(loss_check(1.0, 0.9), [color_check(clip_frames(), PROMPT), bad])
    assert len(lines) == 2
    assert lines[0].startswith("the held-out loss dropped 10%, less than the 30% required")
    assert lines[1].startswith(repr(PROMPT))
