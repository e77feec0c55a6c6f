"""The causal VAE decoder: latents [B, C, 1 + k, h, w] -> pixels [B, 3, 1 + k*t, H, W].

It mirrors the encoder: ``conv_in`` -> one middle residual block -> per stage, from the
coarsest: ``num_res_blocks`` residual blocks, then a causal conv and a 3D pixel shuffle that
doubles height and width (and, in the stages that halved time, doubles time while the first
frame stays a single frame) -> norm, SiLU, ``conv_out``, ``tanh``.

The output goes through ``tanh`` rather than a clamp: it is always inside [-1, 1] and the
gradient never vanishes at a clamp boundary, at the cost that exactly +-1 is only
approached. Every layer runs in the order it is registered, which
:func:`aiprod_core.vae.tiling.receptive_field` relies on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aiprod_core.models.configs import VAEConfig
from aiprod_core.vae.blocks import CausalUpsample, ChannelRMSNorm, ResBlock3d
from aiprod_core.vae.causal_conv import CausalConv3d
from aiprod_core.vae.encoder import stage_channels


class Decoder(nn.Module):
    """Latents [B, latent_channels, T, h, w] -> video [B, in_channels, F, H, W] in [-1, 1]."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        channels = stage_channels(config)
        current = channels[-1]
        self.conv_in = CausalConv3d(config.latent_channels, current, 3)
        blocks: list[nn.Module] = [ResBlock3d(current, current)]
        for stage in reversed(range(config.spatial_stages)):
            for _ in range(config.num_res_blocks):
                blocks.append(ResBlock3d(current, channels[stage]))
                current = channels[stage]
            temporal = 2 if stage < config.temporal_stages else 1
            blocks.append(CausalUpsample(current, temporal, 2))
        self.blocks = nn.Sequential(*blocks)
        self.norm_out = ChannelRMSNorm(current)
        self.conv_out = CausalConv3d(current, config.in_channels, 3)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.conv_in(latents))
        return torch.tanh(self.conv_out(F.silu(self.norm_out(x))))
