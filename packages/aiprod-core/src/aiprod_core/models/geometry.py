"""One source of a model's video -> latent -> token geometry.

A model takes a video of ``F`` frames of ``H x W`` pixels when its VAE can compress it
(``F = 1 + k * temporal``, ``H`` and ``W`` multiples of ``spatial``; see
:class:`aiprod_core.vae.shapes.VideoGeometry`) and its transformer can cut the latent into
whole patches (the ``1 + k`` latent frames a multiple of the patch length, ``H / spatial``
and ``W / spatial`` multiples of the patch height and width). Pipelines, the trainer, the
server's request checks and the benchmarks all ask this class, so no caller rounds a shape
down or repeats the arithmetic.

    geometry = ModelGeometry.of(get_preset("tiny"))
    geometry.latent_shape(9, 32, 32)        # (5, 8, 8)
    geometry.token_grid((5, 8, 8))          # (5, 4, 4): the transformer's Patchifier3D
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aiprod_core.models.configs import ModelConfig
from aiprod_core.transformer.patchify import Patchifier3D
from aiprod_core.vae.shapes import VideoGeometry

Grid = tuple[int, int, int]


@dataclass(frozen=True)
class ModelGeometry:
    """The VAE's compression and the transformer's patch of one model."""

    video: VideoGeometry
    patch_size: Grid

    @classmethod
    def of(cls, config: ModelConfig) -> ModelGeometry:
        """The geometry of ``config``'s VAE and transformer."""
        vae = config.vae
        patch = tuple(int(p) for p in config.transformer.patch_size)
        return cls(
            VideoGeometry(vae.spatial_compression, vae.temporal_compression),
            (patch[0], patch[1], patch[2]),
        )

    @property
    def pixel_multiples(self) -> tuple[int, int]:
        """(height, width) steps between valid pixel sizes: ``spatial x patch``."""
        spatial = self.video.spatial_compression
        return spatial * self.patch_size[1], spatial * self.patch_size[2]

    @property
    def frame_step(self) -> int:
        """Frames between valid counts: ``temporal x patch length``."""
        return self.video.temporal_compression * self.patch_size[0]

    @property
    def first_frames(self) -> int:
        """The smallest valid frame count: ``1 + temporal x (patch length - 1)``."""
        return 1 + self.video.temporal_compression * (self.patch_size[0] - 1)

    def fits_frames(self, frames: int) -> bool:
        """Whether ``frames`` compresses to a latent of whole patches."""
        return frames >= self.first_frames and (frames - self.first_frames) % self.frame_step == 0

    def nearest_frames(self, frames: int) -> str:
        """The valid frame counts just below and above ``frames`` (only the one above if none
        is below), for error messages."""
        first, step = self.first_frames, self.frame_step
        if frames <= first:
            return str(first)
        below = first + (frames - first) // step * step
        return f"{below} or {below + step}"

    def latent_shape(self, frames: int, height: int, width: int) -> Grid:
        """(T, h, w) of the latent of a video the VAE takes (else a VideoShapeError)."""
        return self.video.latent_shape(frames, height, width)

    def token_grid(self, latent: Grid) -> Grid:
        """(T', h', w') of the tokens of a latent of whole patches (else a PatchShapeError)."""
        return Patchifier3D(self.patch_size).grid(latent)

    def num_tokens(self, latent: Grid) -> int:
        """How many tokens the transformer makes of a latent of ``(T, h, w)``."""
        return math.prod(self.token_grid(latent))

    def video_tokens(self, frames: int, height: int, width: int) -> tuple[Grid, Grid]:
        """The latent shape and the token grid of a ``frames x height x width`` video."""
        latent = self.latent_shape(frames, height, width)
        return latent, self.token_grid(latent)
