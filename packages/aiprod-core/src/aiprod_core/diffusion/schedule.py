"""The rectified-flow noise schedule: sampling sigmas, training sigmas, noising, targets.

Time shift: larger videos (more latent tokens) keep more signal at a given sigma, so the
schedule spends more steps at high noise for them. With ``mu`` the log-shift,

    shift(sigma) = e^mu / (e^mu + (1 / sigma - 1))        (= e^mu sigma / (e^mu sigma + 1 - sigma))

which is a translation by ``mu`` in logit space: ``logit(shift(sigma)) = logit(sigma) + mu``.
As in LTX-2, ``mu`` is the straight line through ``base_shift`` at ``base_tokens`` and
``max_shift`` at ``max_tokens``, extended (not clamped) beyond them: a video twice the
largest anchor shifts further still.

Terminal stretch (LTX-2): with ``terminal`` set, the sampling grid's non-zero sigmas are
stretched (``1 - sigma`` scaled) so that the last one before 0 is exactly ``terminal``; the
first stays 1. The final step then goes from ``terminal`` to 0 in one move, and the steps
before it are spread over ``[terminal, 1]`` instead of crowding near 0 where little
changes. ``terminal = None`` keeps the shifted grid as it is.
"""

from __future__ import annotations

import math

import torch

from aiprod_core.models.configs import DiffusionConfig


def broadcast_sigma(sigma: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """``sigma`` shaped to broadcast against ``x`` ``[B, C, T, ...]``.

    Accepts a float or 0-d tensor (one sigma for all), ``[B]`` (one per sample), ``[B, T]``
    (one per latent frame, dim 2 of ``x``), or a tensor already of ``x.ndim`` dims.
    """
    sigma = torch.as_tensor(sigma, device=x.device)
    if sigma.ndim == 0:
        return sigma
    if sigma.ndim == 1:
        return sigma.view(-1, *([1] * (x.ndim - 1)))
    if sigma.ndim == 2 and x.ndim >= 3:
        return sigma.view(sigma.shape[0], 1, sigma.shape[1], *([1] * (x.ndim - 3)))
    if sigma.ndim == x.ndim:
        return sigma
    raise ValueError(
        f"sigma of shape {tuple(sigma.shape)} does not fit x of shape {tuple(x.shape)}; "
        "expected a scalar, [B], [B, T] or a tensor with x's number of dims"
    )


def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """The point ``(1 - sigma) * x0 + sigma * noise`` on the straight path (sigma per sample)."""
    s = broadcast_sigma(sigma, x0).to(x0.dtype)
    return (1 - s) * x0 + s * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """``noise - x0``: the constant ``dx/dsigma`` of the straight path, the training target."""
    return noise - x0


def predict_x0(
    x: torch.Tensor, velocity: torch.Tensor, sigma: torch.Tensor | float
) -> torch.Tensor:
    """The clean sample implied by a velocity at ``x``: ``x - sigma * v`` (for previews)."""
    return x - broadcast_sigma(sigma, x).to(x.dtype) * velocity


def stretch_to_terminal(sigmas: torch.Tensor, terminal: float) -> torch.Tensor:
    """``sigmas`` (decreasing from 1, ending at 0) with ``1 - sigma`` of the non-zero ones
    scaled so the last non-zero sigma is ``terminal`` (see the module docstring)."""
    stretched = sigmas.clone()
    nonzero = sigmas > 0
    one_minus = 1.0 - sigmas[nonzero]
    if one_minus[-1] > 0:
        stretched[nonzero] = 1.0 - one_minus * ((1.0 - terminal) / one_minus[-1])
    return stretched


class FlowMatchSchedule:
    """Rectified-flow schedule with a resolution-dependent shift (see the module docstring)."""

    def __init__(self, config: DiffusionConfig) -> None:
        self.config = config

    def mu(self, num_tokens: int) -> float:
        """The log-shift for ``num_tokens`` latent tokens (the line through the two anchors)."""
        if num_tokens < 1:
            raise ValueError(f"num_tokens must be >= 1, got {num_tokens}")
        c = self.config
        fraction = (num_tokens - c.base_tokens) / (c.max_tokens - c.base_tokens)
        return c.base_shift + fraction * (c.max_shift - c.base_shift)

    @staticmethod
    def shift(sigma: torch.Tensor, mu: float) -> torch.Tensor:
        """``e^mu / (e^mu + (1/sigma - 1))``, written so sigma = 0 maps to 0 exactly."""
        scale = math.exp(mu)
        return scale * sigma / (scale * sigma + (1 - sigma))

    def sigmas(self, steps: int, num_tokens: int) -> torch.Tensor:
        """``steps + 1`` float32 sigmas from 1.0 down to 0.0, strictly decreasing."""
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        uniform = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
        sigmas = self.shift(uniform, self.mu(num_tokens))
        if self.config.terminal is not None:
            sigmas = stretch_to_terminal(sigmas, self.config.terminal)
        return sigmas.to(torch.float32)

    def sample_training_sigmas(
        self,
        batch: int,
        num_tokens: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """``[batch]`` float32 training sigmas: ``shift(sigmoid(N(mean, std)))``.

        The logit-normal draw concentrates training on mid-range noise; the shift moves it
        toward high noise for large inputs, like the sampling schedule. Draws come from
        ``generator`` (on its device) when given, then move to ``device``.
        """
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        draw_device = generator.device if generator is not None else device
        normal = torch.randn(batch, generator=generator, device=draw_device, dtype=torch.float32)
        logits = normal * self.config.logit_normal_std + self.config.logit_normal_mean
        sigma = self.shift(torch.sigmoid(logits), self.mu(num_tokens))
        return sigma.to(device) if device is not None else sigma

    add_noise = staticmethod(add_noise)
    velocity_target = staticmethod(velocity_target)
    predict_x0 = staticmethod(predict_x0)
