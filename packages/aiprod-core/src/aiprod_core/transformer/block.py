"""One transformer block: adaLN self-attention, cross-attention to text, gated MLP.

adaLN-single (PixArt-alpha, LTX-Video): the model turns the timestep into one modulation
``m [B, 1 or N, 6, D]`` shared by every block, and each block adds its own learned table
``[6, D]`` to it, giving shift, scale and gate for the self-attention branch and for the
MLP branch::

    x = x + gate_a * SelfAttention(adaLN(x; shift_a, scale_a))
    x = x + CrossAttention(RMSNorm(x), text)
    x = x + gate_m * MLP(adaLN(x; shift_m, scale_m))

``m`` has one row per sample (a sigma per sample) or one per token (a sigma per token, so
conditioned tokens at sigma 0 are modulated as clean). The table starts at zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aiprod_core.models.configs import TransformerConfig
from aiprod_core.transformer.attention import CrossAttention, SelfAttention
from aiprod_core.transformer.norms import RMSNorm, adaptive_layer_norm
from aiprod_core.transformer.rope import Rope


class GatedMLP(nn.Module):
    """SwiGLU feed-forward: ``down(silu(gate(x)) * up(x))``."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.gate_up = nn.Linear(dim, 2 * hidden_dim)
        self.down = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate_up: torch.Tensor = self.gate_up(x)
        gate, up = gate_up.chunk(2, dim=-1)
        out: torch.Tensor = self.down(F.silu(gate) * up)
        return out


class TransformerBlock(nn.Module):
    """A DiT block conditioned on the timestep (adaLN) and on text (cross-attention)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        dim = config.hidden_dim
        self.scale_shift_table = nn.Parameter(torch.zeros(6, dim))
        self.attn = SelfAttention(dim, config.num_heads, config.qk_norm)
        self.cross_norm = RMSNorm(dim)
        self.cross_attn = CrossAttention(dim, config.num_heads, config.qk_norm)
        self.mlp = GatedMLP(dim, config.mlp_hidden_dim)

    def forward(
        self,
        x: torch.Tensor,
        cond: torch.Tensor,
        rope: Rope,
        context: torch.Tensor,
        context_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """``x [B, N, D]``, ``cond [B, 1 or N, 6, D]`` (the shared modulation),
        ``context [B, L, D]``, ``context_mask [B, L]``."""
        modulation = cond + self.scale_shift_table.to(cond.dtype)
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = modulation.unbind(dim=2)
        x = x + gate_a * self.attn(adaptive_layer_norm(x, shift_a, scale_a), rope)
        x = x + self.cross_attn(self.cross_norm(x), context, context_mask)
        mlp: torch.Tensor = self.mlp(adaptive_layer_norm(x, shift_m, scale_m))
        return x + gate_m * mlp
