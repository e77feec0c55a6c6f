"""The causal 3D video VAE: pixels <-> latents, first frame on its own, tiled decoding.

``CausalVideoVAE(config).encode(video)`` returns a :class:`DiagonalGaussian`;
``decode(latents)`` returns pixels in [-1, 1]; ``decode_tiled`` does the same tile by tile,
exactly or with blended approximate overlaps, in tiles that :func:`plan_tiles` sizes from a
memory budget with :func:`decode_peak_bytes` (one tile's peak activation bytes).
Shapes that do not fit the compression factors raise :class:`VideoShapeError`.
``normalize``/``denormalize`` map raw latents to and from the per-channel normalised ones
the transformer and upsampler use (:mod:`aiprod_core.vae.normalization`).
"""

from aiprod_core.vae.causal_conv import CausalConv3d
from aiprod_core.vae.decode_memory import decode_peak_bytes, default_memory_budget
from aiprod_core.vae.distribution import DiagonalGaussian
from aiprod_core.vae.model import CausalVideoVAE
from aiprod_core.vae.normalization import LatentStatistics, StatisticsAccumulator
from aiprod_core.vae.shapes import VideoGeometry, VideoShapeError
from aiprod_core.vae.tile_plan import TilePlan, minimum_budget, plan_tiles
from aiprod_core.vae.tiling import TILE_MODES, ReceptiveField, TileError

__all__ = [
    "TILE_MODES",
    "CausalConv3d",
    "CausalVideoVAE",
    "DiagonalGaussian",
    "LatentStatistics",
    "ReceptiveField",
    "StatisticsAccumulator",
    "TileError",
    "TilePlan",
    "VideoGeometry",
    "VideoShapeError",
    "decode_peak_bytes",
    "default_memory_budget",
    "minimum_budget",
    "plan_tiles",
]
