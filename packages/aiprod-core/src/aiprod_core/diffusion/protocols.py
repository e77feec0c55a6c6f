"""The small interfaces diffusion pieces meet at, so any sampler composes with any guider,
schedule and conditioning.

Conventions (rectified flow): ``x(sigma) = (1 - sigma) * x0 + sigma * noise``; sigma runs
from 1 (pure noise) to 0 (data) while sampling; a velocity ``v = dx/dsigma`` (``noise -
x0`` along a straight path) is what the transformer predicts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeAlias, runtime_checkable

import torch

VelocityFn: TypeAlias = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``velocity_fn(x, sigma) -> v``: ``x`` ``[B, ...]``; ``sigma`` float32 ``[B]`` (or
``[B, N]`` per token, see ``Conditioning``); ``v`` has ``x``'s shape."""

Denoiser: TypeAlias = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor
]
"""``denoiser(x, sigma, text, text_mask) -> v``: the transformer's forward signature."""

StepCallback: TypeAlias = Callable[[int, float, torch.Tensor], "torch.Tensor | None"]
"""``callback(step, sigma, x)`` after step ``step`` (0-based) reached ``sigma``; a returned
tensor replaces ``x`` (a hook such as ``Conditioning.apply``), None keeps it."""


@runtime_checkable
class Scheduler(Protocol):
    """Produces the sigma grid a sampler walks."""

    def sigmas(self, steps: int, num_tokens: int) -> torch.Tensor:
        """``steps + 1`` float32 values, strictly decreasing from 1.0 to 0.0."""
        ...


@runtime_checkable
class Sampler(Protocol):
    """Integrates ``dx/dsigma = velocity_fn(x, sigma)`` along ``sigmas``."""

    def sample(
        self,
        velocity_fn: VelocityFn,
        x: torch.Tensor,
        sigmas: torch.Tensor,
        callback: StepCallback | None = None,
    ) -> torch.Tensor:
        """``x`` at ``sigmas[-1]``, starting from ``x`` at ``sigmas[0]``."""
        ...


@runtime_checkable
class Guider(Protocol):
    """Combines conditional and unconditional predictions into one velocity."""

    def combine(self, cond: torch.Tensor, uncond: torch.Tensor) -> torch.Tensor:
        """The guided velocity from the two predictions."""
        ...

    def velocity_fn(
        self,
        denoiser: Denoiser,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        uncond_text: torch.Tensor,
        uncond_mask: torch.Tensor,
    ) -> VelocityFn:
        """A sampler-ready velocity function that applies this guidance to ``denoiser``."""
        ...
