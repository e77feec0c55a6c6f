"""Building blocks of the causal VAE (and the latent upsampler).

Every block is local in space and causal in time: normalisation is per position (RMS over
channels, no statistics across frames or pixels), so a frame never sees a later frame and a
spatial tile of the input decodes the same as the matching part of the whole, away from its
edges. That is what makes causal encoding and exact tiled decoding possible.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aiprod_core.vae.causal_conv import CausalConv3d


class ChannelRMSNorm(nn.Module):
    """RMS normalisation over the channel axis of [B, C, T, H, W], with a learnt scale.

    Computed in float32 and cast back, so bfloat16 activations keep their range.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(dim=1, keepdim=True) + self.eps)
        return (x32 * self.weight.float().view(1, -1, 1, 1, 1)).to(x.dtype)


class ResBlock3d(nn.Module):
    """norm -> SiLU -> causal conv, twice, plus a (1x1x1 projected) skip connection."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1 = ChannelRMSNorm(in_channels)
        self.conv1 = CausalConv3d(in_channels, out_channels, 3)
        self.norm2 = ChannelRMSNorm(out_channels)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3)
        self.skip = (
            nn.Identity()
            if in_channels == out_channels
            else CausalConv3d(in_channels, out_channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h: torch.Tensor = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        skip: torch.Tensor = self.skip(x)
        return skip + h


def depth_to_space(x: torch.Tensor, temporal: int, spatial: int) -> torch.Tensor:
    """[B, C*t*s*s, T, H, W] -> [B, C, T*t, H*s, W*s] (a 3D pixel shuffle)."""
    b, c, t, h, w = x.shape
    out = c // (temporal * spatial * spatial)
    x = x.reshape(b, out, temporal, spatial, spatial, t, h, w)
    x = x.permute(0, 1, 5, 2, 6, 3, 7, 4)
    return x.reshape(b, out, t * temporal, h * spatial, w * spatial)


class DepthToSpace(nn.Module):
    """Causal 3D pixel shuffle: ``1 + k`` frames become ``1 + k * temporal`` frames.

    Each input frame unfolds into ``temporal`` frames; the first input frame keeps only its
    last one (dropping ``temporal - 1`` frames), so it still maps to a single frame.
    """

    def __init__(self, temporal: int, spatial: int) -> None:
        super().__init__()
        self.temporal = temporal
        self.spatial = spatial

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = depth_to_space(x, self.temporal, self.spatial)
        return x[:, :, self.temporal - 1 :]


class CausalUpsample(nn.Sequential):
    """Causal conv to ``channels * t * s * s`` then :class:`DepthToSpace`."""

    def __init__(self, channels: int, temporal: int, spatial: int) -> None:
        super().__init__(
            CausalConv3d(channels, channels * temporal * spatial * spatial, 3),
            DepthToSpace(temporal, spatial),
        )
