"""What the transformer reads from each part of a prompt, measured at pure noise.

At sigma 1 the transformer's input is noise alone, so its clean-latent prediction
``x0 = noise - velocity`` can only come from the prompt: trained to the optimum, it is the
mean latent of the training clips whose caption is the prompt. For one part of a synthetic
caption (shape colour, shape, motion, background) and a pair of values ``(a, b)`` of it,
:func:`prompt_reading` therefore compares two differences:

- the *data's*: the mean normalised latent of the training clips whose caption says ``a``
  minus the mean of those that say ``b`` (for motion: where the shape is in each frame);
- the *model's*: the mean prediction for up to ``items`` training captions that say ``a``
  minus the mean prediction for the same captions with that one word changed to ``b``,
  both from the same noise.

A model that reads the word makes a difference about as large as the data's and pointing
the same way (``ratio`` near 1, ``cosine`` near 1); one that ignores it makes almost none
(``ratio`` near 0, ``cosine`` near 0). The demo reports this for every part of the caption,
so a motion or shape check that fails can be traced to the prompt not being read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from aiprod_core.text import TextEncoder
from aiprod_trainer.data.synthetic import CaptionParts, caption_for, parse_caption

#: The pairs of values compared per part of the caption.
PAIRS: tuple[tuple[str, str, str], ...] = (
    ("color", "red", "blue"),
    ("shape", "circle", "square"),
    ("shape", "circle", "triangle"),
    ("motion", "left", "right"),
    ("motion", "up", "down"),
    ("background", "black", "white"),
)


@dataclass(frozen=True)
class WordReading:
    """How much changing one word of the prompt changes the prediction at pure noise,
    against how much it changes the training data's mean latent (see the module docstring)."""

    part: str
    first: str
    second: str
    captions: int
    data_difference: float
    model_difference: float
    cosine: float

    @property
    def ratio(self) -> float:
        """The model's difference as a fraction of the data's."""
        return self.model_difference / self.data_difference if self.data_difference else 0.0

    def describe(self) -> str:
        return (
            f"{self.part} {self.first}/{self.second}: the prediction at pure noise changes "
            f"{self.ratio:.2f}x as much as the data's mean latent (cosine {self.cosine:+.2f}, "
            f"{self.captions} captions)"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "part": self.part,
            "pair": [self.first, self.second],
            "captions": self.captions,
            "data_difference": self.data_difference,
            "model_difference": self.model_difference,
            "ratio": self.ratio,
            "cosine": self.cosine,
        }


@dataclass(frozen=True)
class PromptReading:
    """:class:`WordReading` for each pair of :data:`PAIRS` the training data holds."""

    words: tuple[WordReading, ...]

    def describe(self) -> list[str]:
        return [word.describe() for word in self.words]

    def to_json(self) -> dict[str, Any]:
        return {"words": [word.to_json() for word in self.words]}


def prompt_reading(
    transformer: nn.Module,
    text_encoder: TextEncoder,
    latents: torch.Tensor,
    captions: Sequence[str],
    *,
    fps: float,
    items: int = 64,
    seed: int = 0,
    pairs: Sequence[tuple[str, str, str]] = PAIRS,
) -> PromptReading:
    """Measure :class:`WordReading` for ``pairs`` on training ``latents`` ``[N, C, T, H, W]``
    (normalised, as the transformer is trained on them) and their synthetic ``captions``.

    A pair is skipped when the data has no caption saying one of its values.

    Raises:
        ValueError: ``latents`` and ``captions`` differ in number, ``items`` is below 1, or
            a caption is not a synthetic caption.
    """
    if latents.ndim != 5 or latents.shape[0] != len(captions):
        raise ValueError(
            f"latents: expected [N, C, T, H, W] with N = {len(captions)} (one per caption), "
            f"got {tuple(latents.shape)}"
        )
    if isinstance(items, bool) or items < 1:
        raise ValueError(f"items: expected a count >= 1, got {items!r}")
    parts = [parse_caption(caption) for caption in captions]
    generator = torch.Generator(device="cpu").manual_seed(seed)
    words = []
    for part, first, second in pairs:
        says_first = torch.tensor([getattr(p, part) == first for p in parts])
        says_second = torch.tensor([getattr(p, part) == second for p in parts])
        if not says_first.any() or not says_second.any():
            continue
        data = latents[says_first].float().mean(0) - latents[says_second].float().mean(0)
        chosen = [p for p in parts if getattr(p, part) == first][:items]
        swapped = [_swap(p, part, second) for p in chosen]
        noise = torch.randn((len(chosen), *latents.shape[1:]), generator=generator)
        model = _mean_prediction(transformer, text_encoder, noise, chosen, fps) - (
            _mean_prediction(transformer, text_encoder, noise, swapped, fps)
        )
        words.append(
            WordReading(
                part,
                first,
                second,
                len(chosen),
                float(data.norm()),
                float(model.norm()),
                float(
                    torch.nn.functional.cosine_similarity(model.flatten(), data.flatten(), dim=0)
                ),
            )
        )
    return PromptReading(tuple(words))


def _swap(parts: CaptionParts, part: str, value: str) -> CaptionParts:
    """``parts`` with ``part`` set to ``value``. A shape colour equal to the background is
    not a caption the data holds, so then the other colour takes the changed one's old value
    (``red on blue`` changed to a blue shape reads ``blue on red``)."""
    fields = dataclasses.asdict(parts) | {part: value}
    if fields["color"] == fields["background"]:
        fields["background" if part == "color" else "color"] = getattr(parts, part)
    return parse_caption(
        caption_for(fields["color"], fields["shape"], fields["motion"], fields["background"])
    )


def _mean_prediction(
    transformer: nn.Module,
    text_encoder: TextEncoder,
    noise: torch.Tensor,
    captions: Sequence[CaptionParts],
    fps: float,
) -> torch.Tensor:
    """The mean of ``noise - velocity`` at sigma 1 over ``captions`` (one noise each)."""
    with torch.inference_mode():
        text = text_encoder.encode([parts.caption for parts in captions], device=noise.device)
        sigma = torch.ones(len(captions), device=noise.device)
        velocity = transformer(noise, sigma, text.tokens, text.mask, fps=fps)
        mean: torch.Tensor = (noise - velocity.float()).mean(0)
        return mean
