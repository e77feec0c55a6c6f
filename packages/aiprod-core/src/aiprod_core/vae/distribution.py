"""The diagonal Gaussian posterior the VAE encoder returns."""

from __future__ import annotations

import torch

LOGVAR_RANGE = (-30.0, 20.0)
"""``logvar`` is clamped to this range so ``exp`` neither underflows to 0 nor overflows."""


class DiagonalGaussian:
    """N(mean, exp(logvar)) per latent element; tensors are [B, C, T, h, w]."""

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor) -> None:
        if mean.shape != logvar.shape:
            raise ValueError(
                f"mean {tuple(mean.shape)} and logvar {tuple(logvar.shape)} differ in shape"
            )
        self.mean = mean
        self.logvar = logvar.clamp(*LOGVAR_RANGE)

    @classmethod
    def from_parameters(cls, parameters: torch.Tensor) -> DiagonalGaussian:
        """Split [B, 2C, ...] encoder output along channels into (mean, logvar)."""
        mean, logvar = parameters.chunk(2, dim=1)
        return cls(mean, logvar)

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    @property
    def var(self) -> torch.Tensor:
        return torch.exp(self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """mean + std * noise, the noise drawn from ``generator`` (on the mean's device)."""
        noise = torch.randn(
            self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype
        )
        return self.mean + self.std * noise

    def mode(self) -> torch.Tensor:
        """The most likely latent: the mean."""
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(N(mean, var) || N(0, 1)) summed over all but the batch axis: shape [B], float32."""
        mean, logvar = self.mean.float(), self.logvar.float()
        per_element = mean.pow(2) + logvar.exp() - 1.0 - logvar
        return 0.5 * per_element.flatten(1).sum(dim=1)
