"""The AIPROD video diffusion transformer: latents, noise level and text in; velocity out.

    latents [B, C, T, H, W] --patchify--> tokens [B, N, C*pt*ph*pw] --linear--> x [B, N, D]
    (absolute_positions: x += sin-cos features of each token's seconds and pixels)
    sigma [B] or [B, N] --sinusoids(sigma * 1000)--> MLP --> e [B, 1 or N, D]
    e --SiLU, linear (shared by all blocks)--> m [B, 1 or N, 6, D]       (adaLN-single)
    text [B, L, text_dim] --MLP--> context [B, L, D]             (cross-attention keys/values)
    x --depth x TransformerBlock(x, m, 3D RoPE, context, mask)--> adaLN(e) --linear--> unpatchify

A sigma per sample (``[B]``) is the common case and computes the modulation once per
sample; a sigma per token (``[B, N]``) modulates every token by its own noise level, so
tokens of conditioning frames (sigma 0) are told they are clean while the others are
denoised (image-to-video, keyframes, continuation). RoPE positions are in seconds and
pixels (:mod:`aiprod_core.transformer.rope`), so ``fps`` is an input.

Initialisation: linear weights ~ N(0, 0.02), biases 0; the gates of the shared modulation
and every per-block and final table start at zero, and so does the final projection, so an
untrained model predicts zero velocity and every block starts as the identity (adaLN-Zero).
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
from aiprod_core.transformer.rope import (
    DEFAULT_FPS,
    position_sinusoids,
    rope_frequencies,
    token_positions,
)

INIT_STD = 0.02
MODULATIONS = 6
"""Shift, scale and gate of the attention branch, then of the MLP branch."""
GATES = (2, 5)
"""Which of the :data:`MODULATIONS` are gates (zero-initialised)."""


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
        self.time_modulation = nn.Linear(dim, MODULATIONS * dim)
        self.text_proj = TextProjection(config.text_dim, dim)
        self.blocks = nn.ModuleList(TransformerBlock(config) for _ in range(config.depth))
        self.final_table = nn.Parameter(torch.zeros(2, dim))
        self.final_proj = nn.Linear(dim, patch_dim)

        self.apply(_init_linear)
        with torch.no_grad():
            for gate in GATES:
                self.time_modulation.weight[gate * dim : (gate + 1) * dim].zero_()
        nn.init.zeros_(self.final_proj.weight)
        nn.init.zeros_(self.final_proj.bias)

    def forward(
        self,
        latents: torch.Tensor,
        sigma: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor | None = None,
        *,
        fps: float | torch.Tensor | None = None,
        pixel_scale: float = 1.0,
    ) -> torch.Tensor:
        """Velocity ``[B, C, T, H, W]`` (dtype of ``latents``) at noise level ``sigma``.

        ``sigma`` in [0, 1] is a scalar, ``[B]`` (one per sample) or ``[B, N]`` (one per
        token, in :meth:`Patchifier3D.patchify`'s order); ``text`` is ``[B, L, text_dim]``;
        ``text_mask`` is ``[B, L]`` bool, True for real tokens (None: all real). ``fps``
        (a number or ``[B]``; default :data:`~aiprod_core.transformer.rope.DEFAULT_FPS`)
        and ``pixel_scale`` (2 for latents a x2 upsampler will double) place the tokens in
        seconds and pixels.
        """
        self._check_inputs(latents, sigma, text, text_mask)
        dtype = self.patch_embed.weight.dtype
        tokens, grid = self.patchifier.patchify(latents)
        sigma = self._token_sigma(sigma, latents.shape[0], tokens.shape[1])
        x = self.patch_embed(tokens.to(dtype))
        positions = token_positions(
            grid,
            self.config.patch_size,
            self.config.latent_scale,
            _one_rate(fps),
            pixel_scale,
            device=x.device,
        )
        if self.config.absolute_positions:
            x = x + position_sinusoids(
                positions, x.shape[-1], self.config.rope_theta, self.config.rope_max_positions
            ).to(dtype)
        embedding = self.time_embed(sigma)  # [B, 1 or N, D]
        cond = torch.unflatten(self.time_modulation(F.silu(embedding)), -1, (MODULATIONS, -1))
        context = self.text_proj(text.to(dtype))
        rope = rope_frequencies(
            positions, self.config.head_dim, self.config.rope_theta, self.config.rope_max_positions
        )

        for block in self.blocks:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, cond, rope, context, text_mask, use_reentrant=False)
            else:
                x = block(x, cond, rope, context, text_mask)

        final = self.final_table.to(embedding.dtype) + embedding[..., None, :]
        shift, scale = final.unbind(dim=-2)
        out = self.final_proj(adaptive_layer_norm(x, shift, scale))
        return self.patchifier.unpatchify(out, grid).to(latents.dtype)

    @staticmethod
    def _token_sigma(sigma: torch.Tensor, batch: int, num_tokens: int) -> torch.Tensor:
        """``sigma`` as ``[B, 1]`` (one per sample) or ``[B, N]`` (one per token)."""
        if sigma.ndim == 0:
            return sigma.expand(batch)[:, None]
        if sigma.shape == (batch,):
            return sigma[:, None]
        if sigma.shape == (batch, num_tokens):
            return sigma
        raise ValueError(
            f"sigma must be [B] = [{batch}] or [B, N] = [{batch}, {num_tokens}] (one per "
            f"token), got {tuple(sigma.shape)}"
        )

    def _check_inputs(
        self,
        latents: torch.Tensor,
        sigma: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor | None,
    ) -> None:
        """Raise a ValueError naming the first input whose shape is wrong."""
        cfg = self.config
        if latents.ndim != 5 or latents.shape[1] != cfg.in_channels:
            raise ValueError(
                f"latents must be [B, {cfg.in_channels}, T, H, W], got {tuple(latents.shape)}"
            )
        batch = latents.shape[0]
        if sigma.ndim > 2 or (sigma.ndim >= 1 and sigma.shape[0] != batch):
            raise ValueError(
                f"sigma must be [B] = [{batch}] or [B, N] (one per token), got {tuple(sigma.shape)}"
            )
        if text.ndim != 3 or text.shape[0] != batch or text.shape[2] != cfg.text_dim:
            raise ValueError(f"text must be [{batch}, L, {cfg.text_dim}], got {tuple(text.shape)}")
        if text_mask is not None and (
            text_mask.dtype != torch.bool or text_mask.shape != text.shape[:2]
        ):
            raise ValueError(
                f"text_mask must be bool [{batch}, {text.shape[1]}], "
                f"got {text_mask.dtype} {tuple(text_mask.shape)}"
            )


def _one_rate(fps: float | torch.Tensor | None) -> float | torch.Tensor:
    """``fps`` as one number when every sample has the same rate (positions and RoPE are
    then computed once for the batch), else the ``[B]`` tensor."""
    if fps is None:
        return DEFAULT_FPS
    if isinstance(fps, torch.Tensor) and fps.numel() > 0:
        flat = fps.reshape(-1)
        if bool((flat == flat[0]).all()):
            return float(flat[0])
    return fps


def _init_linear(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
