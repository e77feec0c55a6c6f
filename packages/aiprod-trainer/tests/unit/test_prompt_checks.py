"""The demo's prompt checks: the shape's travel in the named direction, and its shape."""

from __future__ import annotations

import numpy as np
import pytest

from aiprod_trainer.data.synthetic import (
    MOTIONS,
    PALETTE,
    SHAPES,
    ShapeClip,
    caption_for,
    render_clip,
    sample_clip,
)
from aiprod_trainer.demo import prompt_checks
from aiprod_trainer.demo.prompt_checks import (
    MotionCheck,
    ShapeCheck,
    box_blur,
    classify_shapes,
    largest_components,
    motion_check,
    shape_check,
    shape_features,
)

OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}


def first_clip_moving(motion: str, seed: int = 2) -> ShapeClip:
    return next(c for i in range(200) if (c := sample_clip(seed, i)).motion == motion)


def video(clip: ShapeClip, size: int = 32, frames: int = 9) -> np.ndarray:
    return render_clip(clip, width=size, height=size, frames=frames)


def still(shape: str = "square", color: str = "red", background: str = "blue") -> ShapeClip:
    return ShapeClip(shape, color, background, "left", 0.4, (0.5, 0.5), (0.5, 0.5))  # type: ignore[arg-type]


# --- motion -----------------------------------------------------------------------------


@pytest.mark.parametrize("motion", MOTIONS)
def test_true_render_passes_for_its_direction_and_fails_for_the_opposite(motion: str) -> None:
    clip = first_clip_moving(motion)
    frames = video(clip)
    travel = abs(clip.end[0] - clip.start[0]) + abs(clip.end[1] - clip.start[1])

    check = motion_check(frames, clip.caption)
    assert check.passed
    assert check.direction == motion
    assert check.along is not None
    assert check.along == pytest.approx(travel, abs=0.04)
    assert 0.28 <= check.along <= 0.52  # TRAVEL_RANGE, give or take a pixel
    assert check.across is not None
    assert abs(check.across) < 0.02
    assert "[PASS]" in check.describe()

    wrong = caption_for(clip.color, clip.shape, OPPOSITE[motion], clip.background)
    opposite = motion_check(frames, wrong)
    assert not opposite.passed
    assert opposite.along == pytest.approx(-check.along)
    assert "[FAIL]" in opposite.describe()


def test_motion_along_the_other_axis_does_not_count() -> None:
    clip = first_clip_moving("right")
    check = motion_check(video(clip), caption_for(clip.color, clip.shape, "up", clip.background))
    assert check.along is not None
    assert abs(check.along) < 0.02
    assert check.across is not None
    assert check.across > 0.28
    assert not check.passed


def test_still_shape_fails() -> None:
    check = motion_check(video(still()), "a red square moving left on a blue background")
    assert check.along == pytest.approx(0.0)
    assert check.across == pytest.approx(0.0)
    assert not check.passed
    assert check.reason is None
    assert "moved +0.00 of the width left" in check.describe()


def test_min_travel_is_the_threshold() -> None:
    clip = ShapeClip("square", "red", "blue", "down", 0.25, (0.5, 0.25), (0.5, 0.75))
    frames = video(clip)
    assert motion_check(frames, clip.caption).along == pytest.approx(0.5)
    assert motion_check(frames, clip.caption, min_travel=0.5).passed
    assert not motion_check(frames, clip.caption, min_travel=0.55).passed


def test_centroids_are_fractions_and_frames_without_the_shape_are_skipped() -> None:
    clip = ShapeClip("square", "red", "blue", "right", 0.25, (0.25, 0.5), (0.75, 0.5))
    frames = video(clip, frames=5)
    frames[0] = PALETTE["blue"]  # the shape is missing from the first and last frames
    frames[4] = PALETTE["blue"]
    check = motion_check(frames, clip.caption)
    assert check.centroids[0] is None
    assert check.centroids[4] is None
    assert check.centroids[1] == pytest.approx((0.375, 0.5))
    assert check.centroids[3] == pytest.approx((0.625, 0.5))
    assert check.along == pytest.approx(0.25)  # measured from frame 1 to frame 3
    assert check.to_json() == {
        "prompt": clip.caption,
        "color": "red",
        "direction": "right",
        "centroids": [None, [0.375, 0.5], [0.5, 0.5], [0.625, 0.5], None],
        "along": pytest.approx(0.25),
        "across": pytest.approx(0.0),
        "min_travel": 0.10,
        "reason": None,
        "passed": True,
    }


def test_no_mask_fails_with_a_reason() -> None:
    frames = video(still("circle"))  # red on blue: no green pixel
    check = motion_check(frames, "a green circle moving left on a blue background")
    assert check.along is None
    assert check.across is None
    assert not check.passed
    assert (
        check.reason
        == "the green shape shows in 0 of 9 frames; at least 2 are needed to measure its travel"
    )
    assert check.reason in check.describe()
    assert check.to_json()["reason"] == check.reason


def test_one_frame_with_the_shape_is_not_enough() -> None:
    frames = video(still(), frames=3)
    frames[1:] = PALETTE["blue"]
    check = motion_check(frames, "a red square moving left on a blue background")
    assert not check.passed
    assert check.reason is not None
    assert "shows in 1 of 3 frames" in check.reason


def test_blend_pixels_do_not_count_as_the_shape() -> None:
    frames = video(still("square"), frames=2)
    frames[1, 0, 0] = (150, 90, 170)  # a blend 167 from red: not red beyond doubt
    frames[1, 31, 31] = (200, 50, 50)  # a slightly off red: counts
    check = motion_check(frames, "a red square moving right on a blue background")
    assert check.centroids[1] is not None
    assert check.centroids[0] is not None
    assert check.centroids[1][0] > check.centroids[0][0]


# --- shape ------------------------------------------------------------------------------


def accuracy(seeds: range, clips: int, *, blur: bool) -> tuple[float, float]:
    """The fraction of clips whose shape check passes, and of frames classified right."""
    passed = right = total = 0
    for seed in seeds:
        for index in range(clips):
            clip = sample_clip(seed, index)
            frames = video(clip)
            if blur:
                frames = box_blur(frames)
            check = shape_check(frames, clip.caption)
            passed += check.passed
            right += check.votes[clip.shape]
            total += check.frames
    return passed / (len(seeds) * clips), right / total


def test_shape_check_names_sharp_renders_at_32x32() -> None:
    clips, frames = accuracy(range(100, 104), 50, blur=False)
    assert clips >= 0.95
    assert frames >= 0.95


def test_shape_check_names_blurred_renders_at_32x32() -> None:
    clips, frames = accuracy(range(200, 204), 50, blur=True)
    assert clips >= 0.90
    assert frames >= 0.90


@pytest.mark.parametrize("shape", SHAPES)
def test_each_shape_is_recognised_and_a_mismatched_prompt_fails(shape: str) -> None:
    clip = ShapeClip(shape, "yellow", "black", "right", 0.4, (0.3, 0.5), (0.7, 0.5))  # type: ignore[arg-type]
    frames = video(clip)
    check = shape_check(frames, clip.caption)
    assert check.votes == {name: (9 if name == shape else 0) for name in SHAPES}
    assert (check.found, check.expected, check.passed) == (shape, shape, True)
    assert "[PASS]" in check.describe()

    for other in SHAPES:
        if other != shape:
            wrong = shape_check(frames, caption_for("yellow", other, "right", "black"))
            assert (wrong.found, wrong.expected, wrong.passed) == (shape, other, False)
            assert f"found {shape}, expected {other} [FAIL]" in wrong.describe()


def test_a_stray_speck_of_the_colour_does_not_change_the_shape() -> None:
    frames = video(still("triangle"), frames=3)
    frames[:, 1, 1] = PALETTE["red"]
    frames[:, 1:3, 29:31] = PALETTE["red"]
    check = shape_check(frames, "a red triangle moving left on a blue background")
    assert check.votes["triangle"] == 3


def test_shape_check_without_the_shape_fails_with_a_reason() -> None:
    frames = video(still("circle"), frames=4)
    check = shape_check(frames, "a green circle moving left on a blue background")
    assert check.votes == {"circle": 0, "square": 0, "triangle": 0}
    assert check.found is None
    assert not check.passed
    assert (
        check.reason
        == f"no frame of 4 shows {prompt_checks.MIN_SHAPE_PIXELS} or more connected green pixels"
    )
    assert check.to_json() == {
        "prompt": "a green circle moving left on a blue background",
        "color": "green",
        "expected": "circle",
        "votes": {"circle": 0, "square": 0, "triangle": 0},
        "frames": 4,
        "found": None,
        "reason": check.reason,
        "passed": False,
    }


def test_a_tied_vote_finds_nothing() -> None:
    check = ShapeCheck("p", "red", "circle", {"circle": 2, "square": 2, "triangle": 0}, 4)
    assert check.found is None
    assert not check.passed
    assert check.reason == "the vote is tied"
    assert ShapeCheck("p", "red", "circle", {"circle": 3, "square": 2, "triangle": 0}, 5).passed


def test_frames_too_small_to_vote_are_left_out() -> None:
    masks = np.zeros((2, 32, 32), dtype=bool)
    masks[0, 10:20, 10:20] = True
    masks[1, 5, 5:10] = True  # 5 pixels: below MIN_SHAPE_PIXELS
    assert classify_shapes(masks) == ["square", None]


def test_largest_component_keeps_the_biggest_8_connected_part() -> None:
    masks = np.zeros((3, 8, 8), dtype=bool)
    masks[0, 0:2, 0:2] = True  # 4 pixels
    masks[0, 4, 4] = masks[0, 5, 5] = masks[0, 6, 6] = masks[0, 7, 5] = masks[0, 7, 7] = True
    masks[1, 3, 3] = True
    kept = largest_components(masks)
    expected = np.zeros((8, 8), dtype=bool)
    expected[4, 4] = expected[5, 5] = expected[6, 6] = expected[7, 5] = expected[7, 7] = True
    assert (kept[0] == expected).all()  # diagonal neighbours connect: 5 pixels beat 4
    assert kept[1].sum() == 1
    assert kept[1, 3, 3]
    assert not kept[2].any()


def test_shape_features_of_a_square() -> None:
    mask = np.zeros((1, 16, 16), dtype=bool)
    mask[0, 3:9, 5:11] = True
    fill, low_mass, spread, skew, top_row, bottom_row, aspect = shape_features(mask)[0]
    assert (fill, low_mass, skew, top_row, bottom_row, aspect) == pytest.approx((1, 0, 0, 1, 1, 1))
    assert spread == pytest.approx(2 * (36 - 1) / 12 / 36)  # (mu20 + mu02) / area^2


def test_triangle_features_show_its_area_sitting_low() -> None:
    frames = video(still("triangle"), frames=1)
    mask = (frames == np.asarray(PALETTE["red"], dtype=np.uint8)).all(axis=-1)
    fill, low_mass, _, _, top_row, bottom_row, _ = shape_features(mask)[0]
    assert 0.45 < fill < 0.7
    assert low_mass > 0.1
    assert top_row < 0.5 < bottom_row


def test_the_fit_is_deterministic() -> None:
    first = prompt_checks._classifier(32, 32)
    prompt_checks._classifier.cache_clear()
    second = prompt_checks._classifier(32, 32)
    assert first is not second
    assert np.array_equal(first.means, second.means)
    assert np.array_equal(first.precision, second.precision)


def test_box_blur_averages_3x3_and_keeps_the_dtype() -> None:
    frames = np.zeros((1, 4, 4, 3), dtype=np.uint8)
    frames[0, 1, 1] = 90
    blurred = box_blur(frames)
    assert blurred.dtype == np.uint8
    assert blurred.shape == frames.shape
    assert blurred[0, 0, 0, 0] == 10
    assert blurred[0, 2, 2, 0] == 10
    assert blurred[0, 3, 3, 0] == 0


# --- bad input --------------------------------------------------------------------------


@pytest.mark.fault("videos")
@pytest.mark.parametrize(
    "frames",
    [
        np.zeros((32, 32, 3), dtype=np.uint8),
        np.zeros((2, 32, 32, 4), dtype=np.uint8),
        np.zeros((2, 32, 32, 3), dtype=np.float32),
        np.zeros((0, 32, 32, 3), dtype=np.uint8),
    ],
)
@pytest.mark.parametrize("check", [motion_check, shape_check])
def test_checks_reject_frames_that_are_not_a_uint8_rgb_video(
    check: object, frames: np.ndarray
) -> None:
    with pytest.raises(ValueError, match=r"frames: expected a uint8 RGB video .* got "):
        check(frames, "a red circle moving left on a blue background")  # type: ignore[operator]


@pytest.mark.fault("config")
@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("a cat playing piano", "prompt: caption 'a cat playing piano': expected 'a <color>"),
        ("a red star moving left on a blue background", "unknown shape 'star'"),
        (None, "prompt: expected a synthetic caption, got NoneType"),
    ],
)
@pytest.mark.parametrize("check", [motion_check, shape_check])
def test_checks_reject_a_prompt_that_is_not_a_synthetic_caption(
    check: object, prompt: object, message: str
) -> None:
    with pytest.raises(ValueError, match="prompt") as info:
        check(np.zeros((2, 32, 32, 3), dtype=np.uint8), prompt)  # type: ignore[operator]
    assert message in str(info.value)


@pytest.mark.fault("config")
def test_a_very_long_prompt_gives_a_short_message() -> None:
    with pytest.raises(ValueError, match="prompt") as info:
        motion_check(np.zeros((2, 32, 32, 3), dtype=np.uint8), "x" * 100_000)
    assert len(str(info.value)) < 400


@pytest.mark.fault("config")
@pytest.mark.parametrize("min_travel", [0.0, -0.1, 1.5, True])
def test_motion_check_rejects_a_min_travel_outside_0_to_1(min_travel: float) -> None:
    with pytest.raises(ValueError, match="min_travel: expected a fraction 0 < value <= 1"):
        motion_check(
            video(still()), "a red square moving left on a blue background", min_travel=min_travel
        )


@pytest.mark.fault("videos")
def test_shape_check_rejects_frames_too_small_to_tell_shapes_apart() -> None:
    frames = np.zeros((2, 8, 12, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"frames: expected frames at least 16x16 .* got 12x8"):
        shape_check(frames, "a red circle moving left on a blue background")


def test_check_types_are_frozen_results() -> None:
    check = motion_check(video(still()), "a red square moving left on a blue background")
    assert isinstance(check, MotionCheck)
    with pytest.raises(AttributeError):
        check.min_travel = 0.0  # type: ignore[misc]
