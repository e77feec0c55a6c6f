"""Self-attention over video tokens (with 3D RoPE) and cross-attention to text tokens.

Both go through ``torch.nn.functional.scaled_dot_product_attention`` in the input dtype,
so CUDA picks a fused kernel (flash or memory-efficient) where one applies.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aiprod_core.transformer.norms import RMSNorm
from aiprod_core.transformer.rope import Rope, apply_rope


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``[B, N, D]`` -> ``[B, heads, N, D / heads]``."""
    return torch.unflatten(x, -1, (num_heads, -1)).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``[B, heads, N, head_dim]`` -> ``[B, N, heads * head_dim]``."""
    return x.transpose(1, 2).flatten(2)


class SelfAttention(nn.Module):
    """Multi-head self-attention; queries and keys are (optionally) RMS-normalised and rotated."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = RMSNorm(head_dim) if qk_norm else nn.Identity()
        self.k_norm = RMSNorm(head_dim) if qk_norm else nn.Identity()
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: Rope) -> torch.Tensor:
        q, k, v = (_heads(t, self.num_heads) for t in self.qkv(x).chunk(3, dim=-1))
        q = apply_rope(self.q_norm(q), rope)
        k = apply_rope(self.k_norm(k), rope)
        out: torch.Tensor = self.out(_merge_heads(F.scaled_dot_product_attention(q, k, v)))
        return out


class CrossAttention(nn.Module):
    """Video tokens attend to text tokens; padded text tokens (mask False) are never attended.

    A sample whose text is all padding gets no cross-attention contribution (zeros), not NaN.
    """

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.q_norm = RMSNorm(head_dim) if qk_norm else nn.Identity()
        self.k_norm = RMSNorm(head_dim) if qk_norm else nn.Identity()
        self.out = nn.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        q = self.q_norm(_heads(self.q(x), self.num_heads))
        k, v = (_heads(t, self.num_heads) for t in self.kv(context).chunk(2, dim=-1))
        k = self.k_norm(k)
        if mask is None:
            out: torch.Tensor = self.out(_merge_heads(F.scaled_dot_product_attention(q, k, v)))
            return out
        # A row with no real token would softmax over nothing (NaN); let it attend to its
        # padding instead and zero the result, so it contributes nothing and stays finite.
        has_text = mask.any(dim=-1)  # [B]
        attn_mask = (mask | ~has_text[:, None])[:, None, None, :]  # [B, 1, 1, L]
        y: torch.Tensor = self.out(
            _merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask))
        )
        return y * has_text[:, None, None].to(y.dtype)
