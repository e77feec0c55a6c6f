"""Learning rate: linear warm-up, then cosine decay to a floor.

The rate is a pure function of the optimizer step, so resuming needs nothing but the step::

    step < warmup:      lr = base * (step + 1) / warmup
    otherwise:          progress = (step - warmup) / max(1, total - warmup), clamped to [0, 1]
                        lr = floor + (base - floor) * (1 + cos(pi * progress)) / 2,
                        floor = base * min_lr_ratio

``step`` counts optimizer steps from 0 (the rate used *for* that step), so the first step
of a warm-up already trains at ``base / warmup`` rather than at zero.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class WarmupCosineSchedule:
    """Warm-up + cosine learning rate over ``total_steps`` optimizer steps."""

    base_lr: float
    warmup_steps: int
    total_steps: int
    min_lr_ratio: float = 0.1

    def __post_init__(self) -> None:
        if self.base_lr <= 0 or self.warmup_steps < 0 or self.total_steps < 1:
            raise ValueError(
                "expected base_lr > 0, warmup_steps >= 0 and total_steps >= 1; got "
                f"{self.base_lr}, {self.warmup_steps}, {self.total_steps}"
            )
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")

    def lr(self, step: int) -> float:
        """The learning rate of optimizer step ``step`` (0-based)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        if step < self.warmup_steps:
            return self.base_lr * (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        floor = self.base_lr * self.min_lr_ratio
        return floor + (self.base_lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set every parameter group's rate to ``lr(step)`` and return it."""
        rate = self.lr(step)
        for group in optimizer.param_groups:
            group["lr"] = rate
        return rate

    def state_dict(self) -> dict[str, Any]:
        """The schedule's settings as JSON-ready values (it has no other state)."""
        return {"kind": "warmup_cosine", **asdict(self)}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> WarmupCosineSchedule:
        """Rebuild a schedule saved with :meth:`state_dict`."""
        values = {key: value for key, value in state.items() if key != "kind"}
        return cls(**values)
