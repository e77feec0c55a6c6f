"""Normalisations computed in float32 and cast back, so bf16 models stay accurate."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-6


class RMSNorm(nn.Module):
    """Root-mean-square normalisation over the last dimension, with a learned scale."""

    def __init__(self, dim: int, eps: float = EPS) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return (h * self.weight.float()).to(x.dtype)


def adaptive_layer_norm(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: LayerNorm without affine, then ``* (1 + scale) + shift`` from the conditioning.

    ``x`` is ``[B, N, D]``; ``shift`` and ``scale`` are ``[B, 1, D]`` (one per sample) or
    ``[B, N, D]`` (one per token).
    """
    h = F.layer_norm(x.float(), (x.shape[-1],), eps=EPS)
    return (h * (1 + scale.float()) + shift.float()).to(x.dtype)
