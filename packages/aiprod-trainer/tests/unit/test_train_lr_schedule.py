"""Warm-up + cosine learning rate: exact values at the landmarks."""

from __future__ import annotations

import math

import pytest
import torch

from aiprod_trainer.training.lr_schedule import WarmupCosineSchedule


def test_values_at_the_landmarks() -> None:
    schedule = WarmupCosineSchedule(base_lr=1.0, warmup_steps=4, total_steps=14, min_lr_ratio=0.1)
    assert [schedule.lr(step) for step in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert schedule.lr(4) == 1.0  # the cosine starts at the peak
    assert schedule.lr(9) == pytest.approx(0.55)  # half way: the mean of peak and floor
    assert schedule.lr(14) == pytest.approx(0.1)
    assert schedule.lr(100) == pytest.approx(0.1)  # past the end it stays at the floor
    midway = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.3))
    assert schedule.lr(7) == pytest.approx(midway)


def test_without_warmup_and_to_zero() -> None:
    schedule = WarmupCosineSchedule(base_lr=2e-3, warmup_steps=0, total_steps=10, min_lr_ratio=0.0)
    assert schedule.lr(0) == 2e-3
    assert schedule.lr(10) == pytest.approx(0.0, abs=1e-15)
    rates = [schedule.lr(step) for step in range(11)]
    assert rates == sorted(rates, reverse=True)


def test_warmup_as_long_as_the_run() -> None:
    schedule = WarmupCosineSchedule(base_lr=1.0, warmup_steps=5, total_steps=5, min_lr_ratio=0.5)
    assert schedule.lr(4) == 1.0
    assert schedule.lr(5) == 1.0  # a span of zero steps counts as one
    assert schedule.lr(6) == pytest.approx(0.5)


def test_apply_sets_every_group() -> None:
    parameters = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.AdamW([{"params": parameters[:1]}, {"params": parameters[1:]}], lr=9.0)
    schedule = WarmupCosineSchedule(base_lr=1.0, warmup_steps=2, total_steps=4)
    assert schedule.apply(optimizer, 0) == 0.5
    assert [group["lr"] for group in optimizer.param_groups] == [0.5, 0.5]


def test_state_round_trip() -> None:
    schedule = WarmupCosineSchedule(base_lr=3e-4, warmup_steps=7, total_steps=70, min_lr_ratio=0.2)
    state = schedule.state_dict()
    assert state == {
        "kind": "warmup_cosine",
        "base_lr": 3e-4,
        "warmup_steps": 7,
        "total_steps": 70,
        "min_lr_ratio": 0.2,
    }
    assert WarmupCosineSchedule.from_state_dict(state) == schedule


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((0.0, 1, 10, 0.1), "expected base_lr > 0, warmup_steps >= 0 and total_steps >= 1"),
        ((1.0, -1, 10, 0.1), "expected base_lr > 0"),
        ((1.0, 1, 0, 0.1), "expected base_lr > 0"),
        ((1.0, 1, 10, 1.5), "min_lr_ratio must be in [0, 1], got 1.5"),
    ],
)
def test_invalid_settings(arguments: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        WarmupCosineSchedule(*arguments)


def test_negative_step() -> None:
    with pytest.raises(ValueError, match="step must be >= 0, got -1"):
        WarmupCosineSchedule(1.0, 0, 10).lr(-1)
