"""The causal VAE encoder: pixels [B, 3, 1 + k*t, H, W] -> Gaussian parameters.

``conv_in`` -> per stage: ``num_res_blocks`` residual blocks, then a strided causal conv that
halves height and width (and, in the first ``temporal_stages`` stages, time) -> one middle
residual block -> norm, SiLU, ``conv_out`` to ``2 * latent_channels`` (mean, logvar).

A temporal stride-2 causal conv with kernel 3 maps ``1 + 2k`` frames to ``1 + k``: output
frame ``j`` reads frames ``2j - 2 .. 2j``, and output frame 0 reads only the (replicated)
first frame. Stacked, latent frame ``j`` depends on pixel frames ``<= t * j`` and latent
frame 0 on pixel frame 0 alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aiprod_core.models.configs import VAEConfig
from aiprod_core.vae.blocks import ChannelRMSNorm, ResBlock3d
from aiprod_core.vae.causal_conv import CausalConv3d


def stage_channels(config: VAEConfig) -> list[int]:
    """Channels of each spatial stage, from full resolution down."""
    return [config.base_channels * m for m in config.channel_multipliers]


class Encoder(nn.Module):
    """Video [B, in_channels, F, H, W] -> [B, 2 * latent_channels, T, h, w]."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        channels = stage_channels(config)
        self.conv_in = CausalConv3d(config.in_channels, channels[0], 3)
        blocks: list[nn.Module] = []
        current = channels[0]
        for stage, width in enumerate(channels):
            for _ in range(config.num_res_blocks):
                blocks.append(ResBlock3d(current, width))
                current = width
            temporal = 2 if stage < config.temporal_stages else 1
            blocks.append(CausalConv3d(current, current, 3, stride=(temporal, 2, 2)))
        blocks.append(ResBlock3d(current, current))
        self.blocks = nn.Sequential(*blocks)
        self.norm_out = ChannelRMSNorm(current)
        self.conv_out = CausalConv3d(current, 2 * config.latent_channels, 3)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.conv_in(video))
        out: torch.Tensor = self.conv_out(F.silu(self.norm_out(x)))
        return out
