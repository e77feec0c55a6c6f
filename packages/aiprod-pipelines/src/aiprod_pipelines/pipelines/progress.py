"""Progress of a generation: one tqdm bar and an optional ``callback(step, total)``.

A pipeline opens one :class:`StepProgress` per call with the total number of sampler steps
of all its stages, and hands ``progress.step_callback()`` to each sampler run, so a
two-stage generation shows one bar from 0 to ``steps + refine_steps``.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

import torch
from tqdm import tqdm

from aiprod_core.diffusion import StepCallback

ProgressCallback = Callable[[int, int], None]
"""``callback(step, total)`` after each sampler step: ``step`` counts from 1 to ``total``."""


class StepProgress:
    """Counts sampler steps; shows a bar when ``enabled`` and reports to ``callback``."""

    def __init__(
        self,
        total: int,
        *,
        enabled: bool = True,
        callback: ProgressCallback | None = None,
        description: str = "generating",
    ) -> None:
        self.total = total
        self.done = 0
        self.callback = callback
        self._bar = tqdm(total=total, desc=description, unit="step", disable=not enabled)

    def advance(self) -> None:
        """Record one finished step."""
        self.done += 1
        self._bar.update(1)
        if self.callback is not None:
            self.callback(self.done, self.total)

    def step_callback(self) -> StepCallback:
        """A sampler ``StepCallback`` that advances this progress and keeps ``x`` as is."""

        def on_step(step: int, sigma: float, x: torch.Tensor) -> None:
            self.advance()

        return on_step

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> StepProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
