"""Per-channel latent normalisation: the one place raw VAE latents become diffusion latents.

The VAE's posterior means have whatever per-channel offset and scale its training gave
them; the transformer, the latent upsampler and every latent cache work on

    z = (latents - mean) / std          (per channel; ``LatentStatistics.normalize``)

and decoding undoes it (``denormalize``). ``mean`` and ``std`` are measured over the
training set's latents when the VAE finishes training (:class:`StatisticsAccumulator`)
and stored as buffers of the VAE (``vae.latent_stats.mean`` / ``.std``), so they travel
inside its checkpoint. A VAE that has none (a checkpoint written before they existed, or
a freshly initialised one) has the identity: mean 0, std 1, ``measured`` False.
"""

from __future__ import annotations

import torch
from torch import nn

MIN_STD = 1e-4
"""Smallest std a channel is divided by (a constant channel would otherwise blow up)."""


class LatentStatistics(nn.Module):
    """Per-channel ``mean`` and ``std`` buffers ``[C]`` and the maps to and from them."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))

    @property
    def measured(self) -> bool:
        """False while the statistics are the identity (never measured)."""
        return not (bool((self.mean == 0).all()) and bool((self.std == 1).all()))

    def _view(self, tensor: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        shape = [1, -1] + [1] * (like.ndim - 2)
        return tensor.to(device=like.device, dtype=torch.float32).view(shape)

    def normalize(self, latents: torch.Tensor) -> torch.Tensor:
        """Raw latents ``[B, C, ...]`` -> normalised, in float32 then ``latents``' dtype."""
        out = (latents.float() - self._view(self.mean, latents)) / self._view(self.std, latents)
        return out.to(latents.dtype)

    def denormalize(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents ``[B, C, ...]`` -> raw VAE latents (the inverse of normalize)."""
        out = latents.float() * self._view(self.std, latents) + self._view(self.mean, latents)
        return out.to(latents.dtype)

    def set(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store measured statistics (``[C]`` each; std floored at :data:`MIN_STD`)."""
        if mean.shape != self.mean.shape or std.shape != self.std.shape:
            raise ValueError(
                f"statistics must be [{self.mean.numel()}] per channel, got mean "
                f"{tuple(mean.shape)} and std {tuple(std.shape)}"
            )
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all()):
            raise ValueError("latent statistics must be finite")
        with torch.no_grad():
            self.mean.copy_(mean.to(self.mean.dtype))
            self.std.copy_(std.clamp(min=MIN_STD).to(self.std.dtype))


class StatisticsAccumulator:
    """Running per-channel mean and std of latents ``[B, C, ...]`` (float64 sums)."""

    def __init__(self, channels: int) -> None:
        self.channels = channels
        self.count = 0
        self.total = torch.zeros(channels, dtype=torch.float64)
        self.squares = torch.zeros(channels, dtype=torch.float64)

    def update(self, latents: torch.Tensor) -> None:
        """Add every position of every item of ``latents``."""
        if latents.ndim < 2 or latents.shape[1] != self.channels:
            raise ValueError(
                f"latents must be [B, {self.channels}, ...], got {tuple(latents.shape)}"
            )
        values = latents.detach().double().cpu().transpose(0, 1).reshape(self.channels, -1)
        self.count += values.shape[1]
        self.total += values.sum(dim=1)
        self.squares += values.pow(2).sum(dim=1)

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, std)`` float32 ``[C]`` of everything added (population std)."""
        if self.count == 0:
            raise ValueError("no latents were added: cannot measure statistics")
        mean = self.total / self.count
        variance = (self.squares / self.count - mean.pow(2)).clamp(min=0)
        return mean.float(), variance.sqrt().float()
