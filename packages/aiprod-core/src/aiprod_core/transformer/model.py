"""The AIPROD video diffusion transformer: latents, noise level and text in; velocity out.

    latents [B, C, T, H, W] --patchify--> tokens [B, N, C*pt*ph*pw] --linear--> x [B, N, D]
    sigma [B] --sinusoids(sigma * 1000)--> MLP --> c [B, D]      (adaLN conditioning)
    text [B, L, text_dim] --MLP--> context [B, L, D]             (cross-attention keys/values)
    x --depth x TransformerBlock(x, c, 3D RoPE, context, mask)--> adaLN --linear--> unpatchify

Initialisation: linear weights ~ N(0, 0.02), biases 0, and the final projection all zeros,
so an untrained model predicts zero velocity and training starts from an identity-like
network whose blocks already pass gradients (their gates are not zero).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from aiprod_core.models.configs import TransformerConfig
from aiprod_core.transformer.block import TransformerBlock
from aiprod_core.transformer.embeddings import TextProjection, TimestepEmbedding
from aiprod_core.transformer.norms import adaptive_layer_norm
from aiprod_core.transformer.patchify import Patchifier3D
from aiprod_core.transformer.rope import grid_positions, rope_frequencies

INIT_STD = 0.02


class VideoTransformer(nn.Module):
    """DiT over 3D latent patches predicting the flow-matching velocity.

    Set ``gradient_checkpointing = True`` to recompute each block in the backward pass
    instead of keeping its activations (less memory, about one more forward of compute).
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.patchifier = Patchifier3D(config.patch_size)
        self.gradient_checkpointing = False
        dim = config.hidden_dim
        patch_dim = config.in_channels * math.prod(config.patch_size)

        self.patch_embed = nn.Linear(patch_dim, dim)
        self.time_embed = TimestepEmbedding(config.timestep_dim, dim)
        self.text_proj = TextProjection(config.text_dim, dim)
        self.blocks = nn.ModuleList(TransformerBlock(config) for _ in range(config.depth))
        self.final_modulation = nn.Linear(dim, 2 * dim)
        self.final_proj = nn.Linear(dim, patch_dim)

        self.apply(_init_linear)
        nn.init.zeros_(self.final_proj.weight)
        nn.init.zeros_(self.final_proj.bias)

    def forward(
        self,
        latents: torch.Tensor,
        sigma: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Velocity ``[B, C, T, H, W]`` (dtype of ``latents``) at noise level ``sigma``.

        ``sigma`` is ``[B]`` (or a scalar for the whole batch) in [0, 1]; ``text`` is
        ``[B, L, text_dim]``; ``text_mask`` is ``[B, L]`` bool, True for real tokens
        (None: all real).
        """
        sigma = self._check_inputs(latents, sigma, text, text_mask)
        dtype = self.patch_embed.weight.dtype
        tokens, grid = self.patchifier.patchify(latents)
        x = self.patch_embed(tokens.to(dtype))
        cond = F.silu(self.time_embed(sigma))
        context = self.text_proj(text.to(dtype))
        positions = grid_positions(grid, device=x.device)
        rope = rope_frequencies(positions, self.config.head_dim, self.config.rope_theta)

        for block in self.blocks:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, cond, rope, context, text_mask, use_reentrant=False)
            else:
                x = block(x, cond, rope, context, text_mask)

        shift, scale = self.final_modulation(cond).unsqueeze(1).chunk(2, dim=-1)
        out = self.final_proj(adaptive_layer_norm(x, shift, scale))
        return self.patchifier.unpatchify(out, grid).to(latents.dtype)

    def _check_inputs(
        self,
        latents: torch.Tensor,
        sigma: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """Raise a ValueError naming the first input whose shape is wrong; ``sigma`` as [B]."""
        cfg = self.config
        if latents.ndim != 5 or latents.shape[1] != cfg.in_channels:
            raise ValueError(
                f"latents must be [B, {cfg.in_channels}, T, H, W], got {tuple(latents.shape)}"
            )
        batch = latents.shape[0]
        if sigma.ndim == 0:
            sigma = sigma.expand(batch)
        if sigma.shape != (batch,):
            raise ValueError(f"sigma must be [B] = [{batch}], got {tuple(sigma.shape)}")
        if text.ndim != 3 or text.shape[0] != batch or text.shape[2] != cfg.text_dim:
            raise ValueError(f"text must be [{batch}, L, {cfg.text_dim}], got {tuple(text.shape)}")
        if text_mask is not None and (
            text_mask.dtype != torch.bool or text_mask.shape != text.shape[:2]
        ):
            raise ValueError(
                f"text_mask must be bool [{batch}, {text.shape[1]}], "
                f"got {text_mask.dtype} {tuple(text_mask.shape)}"
            )
        return sigma


def _init_linear(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
