"""``CausalVideoVAE``: the causal 3D video autoencoder between pixels and latents.

Videos are [B, 3, F, H, W] in [-1, 1] with ``F = 1 + k * temporal_compression`` and
``H, W`` multiples of ``spatial_compression``; latents are
[B, latent_channels, 1 + k, H / spatial_compression, W / spatial_compression]. The first
frame is encoded on its own (so a still image is a one-frame video) and every layer is
causal in time: latent frame ``j`` depends only on pixel frames ``<= t * j`` and decoded
frame ``f`` only on latent frames ``<= ceil(f / t)``.

``latent_stats`` (:mod:`aiprod_core.vae.normalization`) holds the per-channel statistics
of the VAE's latents over its training set: ``normalize`` turns posterior means into the
latents the transformer and the upsampler work on, ``denormalize`` turns them back before
:meth:`CausalVideoVAE.decode`.
"""

from __future__ import annotations

import torch
from torch import nn

from aiprod_core.models.configs import VAEConfig
from aiprod_core.vae.decoder import Decoder
from aiprod_core.vae.distribution import DiagonalGaussian
from aiprod_core.vae.encoder import Encoder
from aiprod_core.vae.normalization import LatentStatistics
from aiprod_core.vae.shapes import VideoGeometry, VideoShapeError
from aiprod_core.vae.tiling import ReceptiveField, decode_tiled, receptive_field

MIN_DEFAULT_TILE = (16, 32, 32)
"""Lower bound of the default (t, h, w) latent tile of :meth:`CausalVideoVAE.decode_tiled`."""


def _check_tensor(tensor: torch.Tensor, name: str, layout: str, channels: int) -> None:
    if tensor.ndim != 5 or tensor.shape[1] != channels:
        raise VideoShapeError(
            f"{name} must be [batch, {channels}, {layout}], got shape {tuple(tensor.shape)}"
        )


class CausalVideoVAE(nn.Module):
    """Encoder, decoder and the shape rules that connect them (see the module docs)."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.geometry = VideoGeometry(config.spatial_compression, config.temporal_compression)
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.latent_stats = LatentStatistics(config.latent_channels)

    def normalize(self, latents: torch.Tensor) -> torch.Tensor:
        """Raw latents (posterior means or samples) -> the diffusion model's latents."""
        return self.latent_stats.normalize(latents)

    def denormalize(self, latents: torch.Tensor) -> torch.Tensor:
        """The diffusion model's latents -> raw latents, ready for :meth:`decode`."""
        return self.latent_stats.denormalize(latents)

    def validate_video_shape(self, frames: int, height: int, width: int) -> None:
        """Raise VideoShapeError naming each value that does not fit and its valid neighbours."""
        self.geometry.validate_video_shape(frames, height, width)

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """(T, h, w) of the latents of a ``frames x height x width`` video."""
        return self.geometry.latent_shape(frames, height, width)

    def video_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """(F, H, W) of the video that ``frames x height x width`` latents decode to."""
        return self.geometry.video_shape(frames, height, width)

    def encode(self, video: torch.Tensor) -> DiagonalGaussian:
        """Video [B, 3, F, H, W] in [-1, 1] -> posterior over latents [B, C, T, h, w]."""
        _check_tensor(video, "video", "frames, height, width", self.config.in_channels)
        self.validate_video_shape(*video.shape[2:])
        return DiagonalGaussian.from_parameters(self.encoder(video))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents [B, C, T, h, w] -> video [B, 3, 1 + (T-1)*t, h*s, w*s] in [-1, 1]."""
        _check_tensor(latents, "latents", "frames, height, width", self.config.latent_channels)
        self.video_shape(*latents.shape[2:])
        video: torch.Tensor = self.decoder(latents)
        return video

    def receptive_field(self) -> ReceptiveField:
        """How far the decoder reaches; ``.exact_overlap()`` makes tiled decoding exact."""
        return receptive_field(self.decoder)

    def decode_tiled(
        self,
        latents: torch.Tensor,
        tile_latent_size: tuple[int, int, int] | None = None,
        overlap: tuple[int, int, int] | None = None,
    ) -> torch.Tensor:
        """Decode in overlapping (t, h, w) latent tiles to bound peak memory.

        Spatial tiles are blended with linear ramps; in time the overlap is causal context
        (see :mod:`aiprod_core.vae.tiling`). With ``overlap >=
        receptive_field().exact_overlap()`` the result equals :meth:`decode` up to float
        rounding. By default ``overlap`` is that exact overlap, capped at half the tile, and
        the tile is twice the exact overlap and at least :data:`MIN_DEFAULT_TILE`, so the
        defaults are exact and a tile's memory does not grow with the video.
        """
        _check_tensor(latents, "latents", "frames, height, width", self.config.latent_channels)
        self.video_shape(*latents.shape[2:])
        field = self.receptive_field()
        exact = field.exact_overlap()
        if tile_latent_size is None:
            tile_latent_size = (
                max(MIN_DEFAULT_TILE[0], 2 * exact[0]),
                max(MIN_DEFAULT_TILE[1], 2 * exact[1]),
                max(MIN_DEFAULT_TILE[2], 2 * exact[2]),
            )
        if overlap is None:
            t, h, w = tile_latent_size
            overlap = (min(exact[0], t // 2), min(exact[1], h // 2), min(exact[2], w // 2))
        return decode_tiled(self.decoder, latents, field, tile_latent_size, overlap)

    def forward(
        self,
        video: torch.Tensor,
        sample: bool = True,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, DiagonalGaussian]:
        """Reconstruct ``video`` through a posterior sample (or its mode); returns both."""
        posterior = self.encode(video)
        latents = posterior.sample(generator) if sample else posterior.mode()
        return self.decode(latents), posterior
