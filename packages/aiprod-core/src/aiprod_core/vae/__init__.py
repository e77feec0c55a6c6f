"""The causal 3D video VAE: pixels <-> latents, first frame on its own, tiled decoding.

``CausalVideoVAE(config).encode(video)`` returns a :class:`DiagonalGaussian`;
``decode(latents)`` returns pixels in [-1, 1]; ``decode_tiled`` does the same tile by tile.
Shapes that do not fit the compression factors raise :class:`VideoShapeError`.
``normalize``/``denormalize`` map raw latents to and from the per-channel normalised ones
the transformer and upsampler use (:mod:`aiprod_core.vae.normalization`).
"""

from aiprod_core.vae.causal_conv import CausalConv3d
from aiprod_core.vae.distribution import DiagonalGaussian
from aiprod_core.vae.model import CausalVideoVAE
from aiprod_core.vae.normalization import LatentStatistics, StatisticsAccumulator
from aiprod_core.vae.shapes import VideoGeometry, VideoShapeError
from aiprod_core.vae.tiling import ReceptiveField, TileError

__all__ = [
    "CausalConv3d",
    "CausalVideoVAE",
    "DiagonalGaussian",
    "LatentStatistics",
    "ReceptiveField",
    "StatisticsAccumulator",
    "TileError",
    "VideoGeometry",
    "VideoShapeError",
]
