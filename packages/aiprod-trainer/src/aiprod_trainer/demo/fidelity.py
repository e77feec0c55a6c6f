"""The demo's evidence that the model is what it claims: normalised latents, image-to-video
trained per token, and prompts whose motion and shape come out.

- :func:`latent_stats_check`: the per-channel mean and std of the training cache's
  normalised latents must lie within ``tolerance`` (0.1) of 0 and 1: the statistics the
  VAE stored do normalise what the transformer is trained on.
- :func:`conditioning_check`: for held-out clips, a generation conditioned on the clip's
  first frame and one from the same prompt and seed without it. Frame 0 of the conditioned
  video must match the VAE's reconstruction of that frame (PSNR >= ``min_psnr`` dB, 30: a
  mean error of about 8 levels of 255; the causal VAE decodes frame 0 from the clean latent
  frame alone, so anything less means the conditioning leaked), the later frames must keep
  the clip's background first and shape colour second (the colour check) for at least
  ``min_color_fraction`` of the clips, and their mean squared error against the real clip
  must be lower than the unconditioned generation's: the model uses the frame it is given.
- :func:`upsampler_check`: on held-out clips, decoding the trained x2 upsampler's output
  from the half-size latents must beat decoding nearest-neighbour upsampled latents by
  ``required_gain`` dB (1 dB) of PSNR against the real full-size clip.
- :class:`PromptCheck`: per generated prompt, the colour check and the motion and shape
  checks of :mod:`aiprod_trainer.demo.prompt_checks`, and whether all three pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from aiprod_trainer.demo.evidence import ColorCheck, color_check
from aiprod_trainer.demo.prompt_checks import MotionCheck, ShapeCheck, motion_check, shape_check

Frames = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class LatentStatsCheck:
    """Per-channel mean and std of normalised training latents against 0 and 1."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    items: int
    tolerance: float

    @property
    def mean_error(self) -> float:
        return max(abs(value) for value in self.mean)

    @property
    def std_error(self) -> float:
        return max(abs(value - 1.0) for value in self.std)

    @property
    def passed(self) -> bool:
        return self.mean_error <= self.tolerance and self.std_error <= self.tolerance

    def describe(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"normalised training latents ({self.items} clips, {len(self.mean)} channels): "
            f"|mean| <= {self.mean_error:.3f}, |std - 1| <= {self.std_error:.3f}, "
            f"{self.tolerance} allowed [{verdict}]"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "mean": list(self.mean),
            "std": list(self.std),
            "max_abs_mean": self.mean_error,
            "max_abs_std_minus_1": self.std_error,
            "tolerance": self.tolerance,
            "passed": self.passed,
        }


def latent_stats_check(latents: Sequence[torch.Tensor], tolerance: float = 0.1) -> LatentStatsCheck:
    """Measure ``latents`` (each ``[C, T, h, w]``, normalised) per channel."""
    if not latents:
        raise ValueError("latents: expected at least one item")
    channels = latents[0].shape[0]
    flat = torch.cat([item.double().reshape(channels, -1) for item in latents], dim=1)
    mean = flat.mean(dim=1)
    std = flat.std(dim=1, unbiased=False)
    return LatentStatsCheck(
        tuple(mean.tolist()), tuple(std.tolist()), len(latents), float(tolerance)
    )


def psnr(a: Frames, b: Frames) -> float:
    """Peak signal-to-noise ratio of two uint8 images or videos, in dB (inf when equal)."""
    error = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if error == 0 else 10 * math.log10(255.0**2 / error)


def mse(a: Frames, b: Frames) -> float:
    """Mean squared error of two uint8 arrays, on the 0..255 scale."""
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


@dataclass(frozen=True)
class ConditionedClip:
    """One held-out clip generated with and without its first frame."""

    caption: str
    first_frame_psnr: float
    later_mse_conditioned: float
    later_mse_unconditioned: float
    later_colors: ColorCheck

    def to_json(self) -> dict[str, Any]:
        return {
            "caption": self.caption,
            "first_frame_psnr": _finite(self.first_frame_psnr),
            "later_mse_conditioned": self.later_mse_conditioned,
            "later_mse_unconditioned": self.later_mse_unconditioned,
            "later_colors_ok": self.later_colors.passed,
        }


def conditioned_clip(
    caption: str,
    real: Frames,
    reconstructed_first: Frames,
    conditioned: Frames,
    unconditioned: Frames,
) -> ConditionedClip:
    """Compare the videos of one clip (uint8 ``(F, H, W, 3)`` each; ``reconstructed_first``
    is the VAE's reconstruction of the real first frame, ``(H, W, 3)``)."""
    return ConditionedClip(
        caption,
        psnr(conditioned[0], reconstructed_first),
        mse(conditioned[1:], real[1:]),
        mse(unconditioned[1:], real[1:]),
        color_check(conditioned[1:], caption),
    )


@dataclass(frozen=True)
class ConditioningCheck:
    """Image-to-video on held-out clips (see the module docstring)."""

    clips: tuple[ConditionedClip, ...]
    min_psnr: float
    min_color_fraction: float

    @property
    def worst_psnr(self) -> float:
        return min(clip.first_frame_psnr for clip in self.clips)

    @property
    def mse_conditioned(self) -> float:
        return float(np.mean([clip.later_mse_conditioned for clip in self.clips]))

    @property
    def mse_unconditioned(self) -> float:
        return float(np.mean([clip.later_mse_unconditioned for clip in self.clips]))

    @property
    def color_fraction(self) -> float:
        return sum(clip.later_colors.passed for clip in self.clips) / len(self.clips)

    @property
    def failures(self) -> list[str]:
        lines = []
        if self.worst_psnr < self.min_psnr:
            lines.append(
                f"image-to-video: frame 0 reproduces its image at {self.worst_psnr:.1f} dB, "
                f"less than the {self.min_psnr:.0f} dB required"
            )
        if self.color_fraction < self.min_color_fraction:
            lines.append(
                f"image-to-video: later frames keep the clip's colours in "
                f"{self.color_fraction:.0%} of clips, less than {self.min_color_fraction:.0%}"
            )
        if not self.mse_conditioned < self.mse_unconditioned:
            lines.append(
                f"image-to-video: later frames are no closer to the real clip with the first "
                f"frame given (MSE {self.mse_conditioned:.0f}) than without it "
                f"({self.mse_unconditioned:.0f})"
            )
        return lines

    @property
    def passed(self) -> bool:
        return not self.failures

    def describe(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"image-to-video on {len(self.clips)} held-out clips: frame 0 vs the VAE's "
            f"reconstruction >= {_db(self.worst_psnr)} ({self.min_psnr:.0f} dB required); later "
            f"frames keep the colours in {self.color_fraction:.0%}; their MSE against the real "
            f"clip {self.mse_conditioned:.0f} with the first frame vs "
            f"{self.mse_unconditioned:.0f} without [{verdict}]"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "clips": [clip.to_json() for clip in self.clips],
            "worst_first_frame_psnr": _finite(self.worst_psnr),
            "min_psnr": self.min_psnr,
            "later_colors_fraction": self.color_fraction,
            "min_color_fraction": self.min_color_fraction,
            "later_mse_conditioned": self.mse_conditioned,
            "later_mse_unconditioned": self.mse_unconditioned,
            "passed": self.passed,
        }


def conditioning_check(
    clips: Sequence[ConditionedClip], min_psnr: float = 30.0, min_color_fraction: float = 0.75
) -> ConditioningCheck:
    """Judge the conditioned clips; raises ValueError when there are none."""
    if not clips:
        raise ValueError("clips: expected at least one conditioned clip")
    return ConditioningCheck(tuple(clips), float(min_psnr), float(min_color_fraction))


@dataclass(frozen=True)
class UpsamplerCheck:
    """Decoded PSNR of trained against nearest-neighbour x2 latent upsampling."""

    trained: tuple[float, ...]
    nearest: tuple[float, ...]
    required_gain: float

    @property
    def trained_psnr(self) -> float:
        return float(np.mean(self.trained))

    @property
    def nearest_psnr(self) -> float:
        return float(np.mean(self.nearest))

    @property
    def gain(self) -> float:
        return self.trained_psnr - self.nearest_psnr

    @property
    def passed(self) -> bool:
        return self.gain >= self.required_gain

    def describe(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"x2 upsampler on {len(self.trained)} held-out clips: decoded PSNR "
            f"{self.trained_psnr:.2f} dB trained vs {self.nearest_psnr:.2f} dB nearest-neighbour "
            f"({self.gain:+.2f} dB, {self.required_gain:+.1f} dB required) [{verdict}]"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "clips": len(self.trained),
            "trained_psnr": self.trained_psnr,
            "nearest_psnr": self.nearest_psnr,
            "gain_db": self.gain,
            "required_gain_db": self.required_gain,
            "passed": self.passed,
        }


def upsampler_check(
    trained: Sequence[float], nearest: Sequence[float], required_gain: float = 1.0
) -> UpsamplerCheck:
    """Judge per-clip PSNRs (dB) of the two upsamplings; raises ValueError when empty."""
    if not trained or len(trained) != len(nearest):
        raise ValueError("trained and nearest: expected one PSNR per clip each, and some clips")
    return UpsamplerCheck(tuple(trained), tuple(nearest), float(required_gain))


@dataclass(frozen=True)
class PromptCheck:
    """One generated prompt's colour, motion and shape checks."""

    prompt: str
    color: ColorCheck
    motion: MotionCheck
    shape: ShapeCheck

    @property
    def passed(self) -> bool:
        return self.color.passed and self.motion.passed and self.shape.passed

    def describe(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        marks = ", ".join(
            f"{name} {'ok' if check.passed else 'WRONG'}"
            for name, check in (
                ("colours", self.color),
                ("motion", self.motion),
                ("shape", self.shape),
            )
        )
        return f"{self.prompt!r}: {marks} [{verdict}]"

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "colors": self.color.to_json(),
            "motion": self.motion.to_json(),
            "shape": self.shape.to_json(),
            "passed": self.passed,
        }


def prompt_check(frames: Frames, prompt: str, *, check_shape_color: bool = True) -> PromptCheck:
    """All three checks of one generated clip against its prompt."""
    return PromptCheck(
        prompt,
        color_check(frames, prompt, check_shape=check_shape_color),
        motion_check(frames, prompt),
        shape_check(frames, prompt),
    )


def tally(checks: Sequence[PromptCheck]) -> dict[str, int]:
    """How many of ``checks`` pass each check and all of them."""
    return {
        "prompts": len(checks),
        "colors": sum(check.color.passed for check in checks),
        "motion": sum(check.motion.passed for check in checks),
        "shape": sum(check.shape.passed for check in checks),
        "all": sum(check.passed for check in checks),
    }


def _finite(value: float) -> float | None:
    """JSON has no infinity: an exact match's PSNR is reported as null."""
    return value if math.isfinite(value) else None


def _db(value: float) -> str:
    return "inf dB (identical)" if math.isinf(value) else f"{value:.1f} dB"
