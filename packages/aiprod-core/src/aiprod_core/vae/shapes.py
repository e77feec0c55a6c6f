"""Which video and latent shapes the causal VAE accepts, and how they map onto each other.

A video of ``F`` frames of ``H x W`` pixels fits the VAE when ``F = 1 + k * temporal`` (the
first frame is encoded on its own, every later latent frame covers ``temporal`` frames) and
``H``, ``W`` are multiples of ``spatial``. Its latent then has ``1 + k`` frames of
``H / spatial x W / spatial`` positions.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiprod_core.errors import AiprodError


class VideoShapeError(AiprodError, ValueError):
    """A video or latent tensor whose shape the VAE cannot take; the message names the fix."""


def _nearest_frames(frames: int, temporal: int) -> str:
    if frames < 1:
        return "1"
    below = 1 + (frames - 1) // temporal * temporal
    return f"{below} or {below + temporal}"


def _nearest_multiples(value: int, factor: int) -> str:
    below = value // factor * factor
    if below < factor:
        return str(factor)
    return f"{below} or {below + factor}"


@dataclass(frozen=True)
class VideoGeometry:
    """The compression factors of a causal video VAE and the shape arithmetic they imply."""

    spatial_compression: int
    temporal_compression: int

    def problems(self, frames: int, height: int, width: int) -> list[str]:
        """One sentence per value that does not fit the factors (empty when all fit)."""
        t, s = self.temporal_compression, self.spatial_compression
        found = []
        if frames < 1 or (frames - 1) % t:
            found.append(
                f"frames={frames} does not fit temporal_compression={t}: "
                f"use 1 + {t}k frames, e.g. {_nearest_frames(frames, t)}"
            )
        for name, value in (("height", height), ("width", width)):
            if value < s or value % s:
                found.append(
                    f"{name}={value} is not a positive multiple of spatial_compression={s}: "
                    f"use e.g. {_nearest_multiples(value, s)}"
                )
        return found

    def validate_video_shape(self, frames: int, height: int, width: int) -> None:
        """Raise VideoShapeError naming every value that does not fit, with valid neighbours."""
        found = self.problems(frames, height, width)
        if found:
            raise VideoShapeError(f"video shape {frames}x{height}x{width}: " + "; ".join(found))

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """(T, h, w) of the latent of a valid ``frames x height x width`` video."""
        self.validate_video_shape(frames, height, width)
        s = self.spatial_compression
        return 1 + (frames - 1) // self.temporal_compression, height // s, width // s

    def video_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """(F, H, W) of the video a ``frames x height x width`` latent decodes to."""
        if min(frames, height, width) < 1:
            raise VideoShapeError(
                f"latent shape {frames}x{height}x{width}: every size must be at least 1"
            )
        s = self.spatial_compression
        return 1 + (frames - 1) * self.temporal_compression, height * s, width * s
