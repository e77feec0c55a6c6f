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
from aiprod_core.vae.decode_memory import default_memory_budget
from aiprod_core.vae.decoder import Decoder
from aiprod_core.vae.distribution import DiagonalGaussian
from aiprod_core.vae.encoder import Encoder
from aiprod_core.vae.normalization import LatentStatistics
from aiprod_core.vae.shapes import VideoGeometry, VideoShapeError
from aiprod_core.vae.tile_plan import TilePlan, default_overlap, plan_tiles
from aiprod_core.vae.tiling import ReceptiveField, TileError, decode_tiled, receptive_field


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

    def plan_tiles(
        self,
        latent_shape: tuple[int, int, int],
        memory_budget: int | None = None,
        mode: str = "exact",
        overlap: tuple[int, int, int] | None = None,
    ) -> TilePlan:
        """The tiles :meth:`decode_tiled` uses for latents of ``(T, h, w)`` within
        ``memory_budget`` bytes (default: :func:`default_memory_budget` of the VAE's device),
        in the VAE's dtype (see :mod:`aiprod_core.vae.tile_plan`)."""
        parameter = next(self.decoder.parameters())
        budget = default_memory_budget(parameter.device) if memory_budget is None else memory_budget
        size = parameter.element_size()
        return plan_tiles(self.config, latent_shape, budget, size, mode, overlap)

    def auto_tile_mode(
        self, latent_shape: tuple[int, int, int], memory_budget: int | None = None
    ) -> str:
        """``"exact"`` when exact tiles of ``(T, h, w)`` latents fit ``memory_budget``, else
        ``"blended"``: at aiprod-19b sizes the exact overlap (more latent frames and rows than
        a 121 x 768 x 1280 clip has) needs ~117 GiB, blended tiles fit 16 GiB."""
        try:
            self.plan_tiles(latent_shape, memory_budget, "exact")
        except TileError:
            return "blended"
        return "exact"

    def decode_tiled(
        self,
        latents: torch.Tensor,
        tile_latent_size: tuple[int, int, int] | None = None,
        overlap: tuple[int, int, int] | None = None,
        *,
        memory_budget: int | None = None,
        mode: str = "exact",
    ) -> torch.Tensor:
        """Decode in overlapping (t, h, w) latent tiles to bound peak memory.

        ``mode="auto"`` is exact when exact tiles fit the budget, else blended
        (:meth:`auto_tile_mode`). ``mode="exact"`` (the default) blends spatial tiles with ramps that skip the
        receptive-field margin and gives temporal tiles causal context: with ``overlap >=
        receptive_field().exact_overlap()`` the result equals :meth:`decode` up to float
        rounding. ``mode="blended"`` overlaps less (LTX-2's 64 pixels and 24 frames) and
        blends over the whole overlap in space and time: approximate, fewer decoded pixels.
        See :mod:`aiprod_core.vae.tiling`.

        Without ``tile_latent_size`` the tile is the one :meth:`plan_tiles` picks for
        ``memory_budget`` bytes (default: from the device); a budget too small for any tile
        raises a TileError naming the smallest that works. With it, ``overlap`` defaults to
        the mode's overlap capped at half the tile.
        """
        _check_tensor(latents, "latents", "frames, height, width", self.config.latent_channels)
        self.video_shape(*latents.shape[2:])
        field = self.receptive_field()
        if mode == "auto":
            t, h, w = latents.shape[2:]
            mode = "exact" if tile_latent_size else self.auto_tile_mode((t, h, w), memory_budget)
        if tile_latent_size is None:
            t, h, w = latents.shape[2:]
            plan = self.plan_tiles((t, h, w), memory_budget, mode, overlap)
            tile_latent_size, overlap = plan.tile, plan.overlap
        elif memory_budget is not None:
            raise TileError("give tile_latent_size or memory_budget, not both")
        elif overlap is None:
            t, h, w = tile_latent_size
            default = default_overlap(field, mode)
            overlap = (min(default[0], t // 2), min(default[1], h // 2), min(default[2], w // 2))
        return decode_tiled(self.decoder, latents, field, tile_latent_size, overlap, mode)

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
