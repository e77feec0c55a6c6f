"""demo.prompt_reading: what a transformer reads from each word, against the data's means."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
from torch import nn

from aiprod_core.models import build_model, get_preset
from aiprod_core.text import TextEmbedding
from aiprod_trainer.data.synthetic import MOTIONS, caption_for, parse_caption
from aiprod_trainer.demo.prompt_reading import PAIRS, _swap, prompt_reading

SHAPE = (2, 3, 4, 4)  # latent channels, frames, rows, columns


class MotionEncoder:
    """A text encoder whose one token is the one-hot of the caption's motion."""

    def encode(
        self, prompts: Sequence[str], device: torch.device | str | None = None
    ) -> TextEmbedding:
        tokens = torch.zeros(len(prompts), 1, len(MOTIONS))
        for row, prompt in enumerate(prompts):
            tokens[row, 0, MOTIONS.index(parse_caption(prompt).motion)] = 1.0
        return TextEmbedding(tokens=tokens, mask=torch.ones(len(prompts), 1, dtype=torch.bool))


class ReadsMotion(nn.Module):
    """Predicts ``x0 = means[motion]`` at any noise: a transformer that reads the motion word."""

    def __init__(self, means: torch.Tensor) -> None:
        super().__init__()
        self.means = means  # [motions, *SHAPE]

    def forward(self, noise, sigma, text, mask, *, fps):  # type: ignore[no-untyped-def]
        x0 = torch.einsum("bm,m...->b...", text[:, 0], self.means)
        return noise - x0


class IgnoresText(nn.Module):
    def forward(self, noise, sigma, text, mask, *, fps):  # type: ignore[no-untyped-def]
        return noise - 0.5


def motion_data() -> tuple[torch.Tensor, list[str], torch.Tensor]:
    """Latents whose mean depends on the motion alone (plus zero-mean noise per clip)."""
    generator = torch.Generator().manual_seed(0)
    means = torch.randn((len(MOTIONS), *SHAPE), generator=generator)
    captions, latents = [], []
    for index in range(48):
        motion = MOTIONS[index % len(MOTIONS)]
        captions.append(caption_for("red", "circle", motion, "blue"))
        latents.append(means[MOTIONS.index(motion)])
    stacked = torch.stack(latents)
    # Each motion's clips get noise that sums to zero, so their mean is exactly its mean.
    noise = torch.randn(stacked.shape, generator=generator)
    for motion in range(len(MOTIONS)):
        noise[motion :: len(MOTIONS)] -= noise[motion :: len(MOTIONS)].mean(0)
    return stacked + noise, captions, means


def test_a_model_that_reads_the_motion_word_matches_the_data() -> None:
    latents, captions, means = motion_data()
    reading = prompt_reading(ReadsMotion(means), MotionEncoder(), latents, captions, fps=8.0)
    motion = [word for word in reading.words if word.part == "motion"]
    assert [(w.first, w.second) for w in motion] == [("left", "right"), ("up", "down")]
    for word in motion:
        assert word.ratio == pytest.approx(1.0, abs=1e-5)
        assert word.cosine == pytest.approx(1.0, abs=1e-5)
        assert word.captions == 12
    # The data names one colour, shape and background: no other pair can be compared.
    assert {word.part for word in reading.words} == {"motion"}
    assert "motion left/right" in reading.describe()[0]
    assert reading.to_json()["words"][0]["ratio"] == pytest.approx(1.0, abs=1e-5)


def test_a_model_that_ignores_the_prompt_shows_no_difference() -> None:
    latents, captions, means = motion_data()
    reading = prompt_reading(IgnoresText(), MotionEncoder(), latents, captions, fps=8.0, items=5)
    for word in reading.words:
        assert word.model_difference == 0.0
        assert word.ratio == 0.0
        first, second = MOTIONS.index(word.first), MOTIONS.index(word.second)
        expected = float((means[first] - means[second]).norm())
        assert word.data_difference == pytest.approx(expected, rel=1e-5)
        assert word.captions == 5


def test_the_tiny_model_is_measured_on_every_pair_the_data_holds() -> None:
    torch.manual_seed(0)
    config = get_preset("tiny")
    model = build_model(config).eval()
    captions = [
        caption_for(color, shape, motion, background)
        for color, background in (("red", "blue"), ("blue", "red"), ("black", "white"))
        for shape in ("circle", "square", "triangle")
        for motion in MOTIONS
    ] + [caption_for("white", "circle", "up", "black")]
    latents = torch.randn(len(captions), config.vae.latent_channels, 3, 4, 4)
    reading = prompt_reading(model.transformer, model.text_encoder, latents, captions, fps=8.0)
    assert [(w.part, w.first, w.second) for w in reading.words] == list(PAIRS)
    for word in reading.words:
        assert word.data_difference > 0
        # An untrained transformer predicts zero velocity: x0 is the noise, whatever the text.
        assert word.model_difference == 0.0


def test_a_changed_colour_never_equals_the_background() -> None:
    parts = parse_caption("a blue circle moving left on a red background")
    assert _swap(parts, "color", "red").caption == "a red circle moving left on a blue background"
    assert _swap(parts, "background", "blue").caption == (
        "a red circle moving left on a blue background"
    )
    assert _swap(parts, "motion", "up").caption == "a blue circle moving up on a red background"


def test_bad_inputs_name_what_was_expected() -> None:
    latents, captions, _ = motion_data()
    with pytest.raises(ValueError, match=r"latents: expected \[N, C, T, H, W\] with N = 47"):
        prompt_reading(IgnoresText(), MotionEncoder(), latents, captions[:-1], fps=8.0)
    with pytest.raises(ValueError, match="items: expected a count >= 1, got 0"):
        prompt_reading(IgnoresText(), MotionEncoder(), latents, captions, fps=8.0, items=0)
    with pytest.raises(ValueError, match="expected 'a <color> <shape> moving"):
        prompt_reading(IgnoresText(), MotionEncoder(), latents, ["a dog", *captions[1:]], fps=8.0)
