"""Latent spatial x2 upsampler for two-stage generation.

Generate at low resolution, upsample the latents with :class:`LatentUpsampler`, then refine
at full resolution. The network works on latents [B, C, T, h, w] and returns
[B, C, T, 2h, 2w], keeping the frame count:

    conv_in -> num_blocks residual blocks -> causal conv + pixel shuffle (x2 in h and w)
            -> num_blocks residual blocks -> norm, SiLU, conv_out
    output  =  nearest-neighbour x2 upsampling of the input  +  that residual

``conv_out`` starts at :data:`OUTPUT_INIT_SCALE` times its default initialisation, so an
untrained upsampler is nearest-neighbour upsampling plus a small correction, and training
learns the correction. (A zero initialisation would make it exactly nearest-neighbour but
would also block the gradient to every layer before ``conv_out`` on the first step.) The
blocks are the VAE's causal ones, so latent frame ``t`` of the output depends only on input
frames ``<= t``.

It works on the VAE's normalised latents (``vae.normalize``), like the transformer.
``trained_steps`` (a buffer saved with the weights) counts the optimizer steps it was
trained for; 0 means it has never been trained, and pipelines warn before using it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aiprod_core.models.configs import UpsamplerConfig
from aiprod_core.vae.blocks import CausalUpsample, ChannelRMSNorm, ResBlock3d
from aiprod_core.vae.causal_conv import CausalConv3d
from aiprod_core.vae.shapes import VideoShapeError

OUTPUT_INIT_SCALE = 1e-2
"""Factor on ``conv_out``'s default initial weights (its bias starts at zero)."""


def nearest_upsample(latents: torch.Tensor) -> torch.Tensor:
    """Repeat every latent position 2x2 times: [B, C, T, h, w] -> [B, C, T, 2h, 2w]."""
    return latents.repeat_interleave(2, dim=3).repeat_interleave(2, dim=4)


class LatentUpsampler(nn.Module):
    """Doubles the spatial size of latents; see the module docs for the design."""

    trained_steps: torch.Tensor

    @property
    def trained(self) -> bool:
        """Whether any training step has been recorded in ``trained_steps``."""
        return int(self.trained_steps) > 0

    def __init__(self, config: UpsamplerConfig) -> None:
        super().__init__()
        self.config = config
        hidden = config.hidden_channels
        self.conv_in = CausalConv3d(config.latent_channels, hidden, 3)
        self.pre_blocks = nn.Sequential(
            *(ResBlock3d(hidden, hidden) for _ in range(config.num_blocks))
        )
        self.upsample = CausalUpsample(hidden, temporal=1, spatial=2)
        self.post_blocks = nn.Sequential(
            *(ResBlock3d(hidden, hidden) for _ in range(config.num_blocks))
        )
        self.norm_out = ChannelRMSNorm(hidden)
        self.conv_out = CausalConv3d(hidden, config.latent_channels, 3)
        self.register_buffer("trained_steps", torch.zeros((), dtype=torch.int64))
        with torch.no_grad():
            bias = self.conv_out.conv.bias
            assert bias is not None, "CausalConv3d convolutions are built with a bias"
            self.conv_out.conv.weight.mul_(OUTPUT_INIT_SCALE)
            bias.zero_()

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, C, T, h, w] -> [B, C, T, 2h, 2w], same dtype and device."""
        channels = self.config.latent_channels
        if latents.ndim != 5 or latents.shape[1] != channels:
            raise VideoShapeError(
                f"latents must be [batch, {channels}, frames, height, width], "
                f"got shape {tuple(latents.shape)}"
            )
        x = self.pre_blocks(self.conv_in(latents))
        x = self.post_blocks(self.upsample(x))
        residual: torch.Tensor = self.conv_out(F.silu(self.norm_out(x)))
        return nearest_upsample(latents) + residual
