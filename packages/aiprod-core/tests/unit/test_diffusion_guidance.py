"""ClassifierFreeGuidance: the combination algebra and the batched denoiser call."""

from __future__ import annotations

import math

import pytest
import torch

from aiprod_core.diffusion import ClassifierFreeGuidance, EulerSampler, Guider


def test_combine_algebra() -> None:
    cond = torch.tensor([1.0, 2.0, -3.0])
    uncond = torch.tensor([0.5, 2.5, 1.0])
    torch.testing.assert_close(
        ClassifierFreeGuidance(4.0).combine(cond, uncond), torch.tensor([2.5, 0.5, -15.0])
    )
    assert torch.equal(ClassifierFreeGuidance(0.0).combine(cond, uncond), uncond)
    assert ClassifierFreeGuidance(1.0).combine(cond, uncond) is cond  # exactly cond
    # guidance is linear: the guided result minus uncond scales with the scale
    low = ClassifierFreeGuidance(2.0).combine(cond, uncond) - uncond
    high = ClassifierFreeGuidance(6.0).combine(cond, uncond) - uncond
    torch.testing.assert_close(high, 3 * low)


@pytest.mark.parametrize("scale", [-1.0, math.inf, math.nan])
def test_rejects_bad_scale(scale: float) -> None:
    with pytest.raises(ValueError, match="guidance scale must be a finite number >= 0"):
        ClassifierFreeGuidance(scale)


class RecordingDenoiser:
    """v = x * sigma + (sum of real text tokens); records each call's batch."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def __call__(
        self, x: torch.Tensor, sigma: torch.Tensor, text: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        self.batches.append(x.shape[0])
        assert sigma.shape[0] == text.shape[0] == mask.shape[0] == x.shape[0]
        text_term = (text.sum(-1) * mask).sum(-1).view(-1, 1, 1)
        return x * sigma.view(-1, 1, 1) + text_term


def test_velocity_fn_batches_cond_and_uncond_in_one_call() -> None:
    denoiser = RecordingDenoiser()
    guidance = ClassifierFreeGuidance(3.0)
    assert isinstance(guidance, Guider)
    text = torch.ones(2, 4, 1)
    mask = torch.tensor([[True, True, False, False], [True] * 4])
    uncond_text = torch.full((2, 2, 1), 5.0)  # shorter: padded and masked
    uncond_mask = torch.tensor([[True, False], [False, False]])
    velocity_fn = guidance.velocity_fn(denoiser, text, mask, uncond_text, uncond_mask)
    x = torch.ones(2, 3, 2)
    sigma = torch.tensor([0.5, 0.25])
    result = velocity_fn(x, sigma)
    assert denoiser.batches == [4]
    cond = x * sigma.view(-1, 1, 1) + torch.tensor([2.0, 4.0]).view(-1, 1, 1)
    uncond = x * sigma.view(-1, 1, 1) + torch.tensor([5.0, 0.0]).view(-1, 1, 1)
    torch.testing.assert_close(result, uncond + 3.0 * (cond - uncond))


def test_one_negative_prompt_serves_the_batch() -> None:
    denoiser = RecordingDenoiser()
    velocity_fn = ClassifierFreeGuidance(2.0).velocity_fn(
        denoiser,
        torch.ones(3, 2, 1),
        torch.ones(3, 2, dtype=torch.bool),
        torch.full((1, 2, 1), 4.0),
        torch.tensor([[True, False]]),
    )
    result = velocity_fn(torch.zeros(3, 1, 1), torch.full((3,), 0.5))
    assert denoiser.batches == [6]
    torch.testing.assert_close(result, torch.zeros(3, 1, 1))  # 4 + 2 * (2 - 4)
    with pytest.raises(ValueError, match="uncond_text has batch 2; expected 1 or 3"):
        ClassifierFreeGuidance(2.0).velocity_fn(
            denoiser,
            torch.ones(3, 2, 1),
            torch.ones(3, 2, dtype=torch.bool),
            torch.ones(2, 2, 1),
            torch.ones(2, 2, dtype=torch.bool),
        )


def test_scale_one_skips_the_unconditional_pass() -> None:
    denoiser = RecordingDenoiser()
    text = torch.ones(2, 3, 1)
    mask = torch.ones(2, 3, dtype=torch.bool)
    velocity_fn = ClassifierFreeGuidance(1.0).velocity_fn(
        denoiser, text, mask, torch.zeros(2, 3, 1), mask
    )
    x = torch.randn(2, 3, 2)
    sigma = torch.tensor([1.0, 0.5])
    result = velocity_fn(x, sigma)
    assert denoiser.batches == [2]
    assert torch.equal(result, denoiser(x, sigma, text, mask))


def test_guided_sampling_runs_through_a_sampler() -> None:
    denoiser = RecordingDenoiser()
    mask = torch.ones(1, 1, dtype=torch.bool)
    velocity_fn = ClassifierFreeGuidance(2.0).velocity_fn(
        denoiser, torch.ones(1, 1, 1), mask, torch.zeros(1, 1, 1), mask
    )
    out = EulerSampler().sample(velocity_fn, torch.zeros(1, 1, 1), torch.tensor([1.0, 0.5, 0.0]))
    # cond - uncond is the text term 1, so v = x * sigma + 2: at (x=0, s=1) v = 2 -> x = -1;
    # at (x=-1, s=0.5) v = 1.5 -> x = -1 - 0.5 * 1.5 = -1.75
    assert denoiser.batches == [2, 2]
    torch.testing.assert_close(out, torch.full((1, 1, 1), -1.75))
