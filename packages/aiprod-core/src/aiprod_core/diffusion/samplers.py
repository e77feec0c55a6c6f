"""ODE samplers for rectified flow: integrate ``dx/dsigma = v(x, sigma)`` along a sigma grid.

Both keep ``x``'s dtype (keep latents in float32 and let the denoiser cast to bf16) and call
``velocity_fn`` with ``sigma`` as a float32 ``[B]`` tensor on ``x``'s device.
"""

from __future__ import annotations

from itertools import pairwise

import torch

from aiprod_core.diffusion.protocols import StepCallback, VelocityFn


def _sigma_grid(sigmas: torch.Tensor) -> list[float]:
    values = [float(s) for s in sigmas.detach().reshape(-1).tolist()]
    if len(values) < 2:
        raise ValueError(f"sigmas needs at least 2 values (start and end), got {len(values)}")
    return values


def _batch_sigma(value: float, x: torch.Tensor) -> torch.Tensor:
    return torch.full((x.shape[0],), value, dtype=torch.float32, device=x.device)


def _after_step(
    callback: StepCallback | None, step: int, sigma: float, x: torch.Tensor
) -> torch.Tensor:
    if callback is None:
        return x
    replaced = callback(step, sigma, x)
    return x if replaced is None else replaced


class EulerSampler:
    """First-order steps ``x += (sigma_next - sigma) * v(x, sigma)``: one call per step.

    Exact for straight paths: along ``x = x0 + sigma * c`` the velocity is the constant
    ``c``, so any grid lands on ``x0``.
    """

    def sample(
        self,
        velocity_fn: VelocityFn,
        x: torch.Tensor,
        sigmas: torch.Tensor,
        callback: StepCallback | None = None,
    ) -> torch.Tensor:
        grid = _sigma_grid(sigmas)
        for step, (sigma, sigma_next) in enumerate(pairwise(grid)):
            velocity = velocity_fn(x, _batch_sigma(sigma, x)).to(x.dtype)
            x = x + (sigma_next - sigma) * velocity
            x = _after_step(callback, step, sigma_next, x)
        return x


class HeunSampler:
    """Second-order (trapezoid) steps: Euler predictor, then the mean of both velocities.

    ``x' = x + h v(x, s)``; ``x += h (v(x, s) + v(x', s_next)) / 2`` with ``h = s_next - s``.
    A step that ends at sigma = 0 is a plain Euler step: the velocity at sigma = 0 is not
    needed for the data end and is singular for some fields (``(x - x0) / sigma``). So
    ``n`` steps ending at 0 cost ``2n - 1`` calls to ``velocity_fn``.
    """

    def sample(
        self,
        velocity_fn: VelocityFn,
        x: torch.Tensor,
        sigmas: torch.Tensor,
        callback: StepCallback | None = None,
    ) -> torch.Tensor:
        grid = _sigma_grid(sigmas)
        for step, (sigma, sigma_next) in enumerate(pairwise(grid)):
            h = sigma_next - sigma
            velocity = velocity_fn(x, _batch_sigma(sigma, x)).to(x.dtype)
            predicted = x + h * velocity
            if sigma_next == 0.0:
                x = predicted
            else:
                corrector = velocity_fn(predicted, _batch_sigma(sigma_next, x)).to(x.dtype)
                x = x + h * 0.5 * (velocity + corrector)
            x = _after_step(callback, step, sigma_next, x)
        return x
