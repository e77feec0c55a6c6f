"""Conditioning inputs of the transformer: the noise level (timestep) and the text tokens."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

TIMESTEP_SCALE = 1000.0


def timestep_sinusoids(sigma: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """``[*sigma.shape, dim]`` float32 sinusoidal features of ``sigma * 1000`` (cos half, then
    sin half): ``[B, dim]`` for a sigma per sample, ``[B, N, dim]`` for one per token.

    An odd ``dim`` gets a final zero column.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, device=sigma.device, dtype=torch.float32) / half
    )
    angles = (sigma.float() * TIMESTEP_SCALE)[..., None] * freqs
    features = torch.cat([angles.cos(), angles.sin()], dim=-1)
    if dim % 2:
        features = F.pad(features, (0, 1))
    return features


class TimestepEmbedding(nn.Module):
    """Sinusoidal features of the noise level, then a two-layer MLP to the model width."""

    def __init__(self, frequency_dim: int, dim: int) -> None:
        super().__init__()
        self.frequency_dim = frequency_dim
        self.fc1 = nn.Linear(frequency_dim, dim)
        self.fc2 = nn.Linear(dim, dim)

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        features = timestep_sinusoids(sigma, self.frequency_dim).to(self.fc1.weight.dtype)
        out: torch.Tensor = self.fc2(F.silu(self.fc1(features)))
        return out


class TextProjection(nn.Module):
    """Maps text-encoder tokens ``[B, L, text_dim]`` to the model width (once, for all blocks)."""

    def __init__(self, text_dim: int, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(text_dim, dim)
        self.fc2 = nn.Linear(dim, dim)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc2(F.gelu(self.fc1(text), approximate="tanh"))
        return out
