"""FirstFrameCondition: conditioned frames stay clean through sampling, others move."""

from __future__ import annotations

import pytest
import torch

from aiprod_core.diffusion import (
    EulerSampler,
    FirstFrameCondition,
    FlowMatchSchedule,
    HeunSampler,
    Sampler,
)
from aiprod_core.models.presets import TINY

SHAPE = (2, 4, 5, 3, 3)  # B, C, T, h, w


def make(frames: int = 1) -> tuple[FirstFrameCondition, torch.Tensor]:
    generator = torch.Generator().manual_seed(frames)
    clean = torch.randn(2, 4, frames, 3, 3, generator=generator)
    noise = torch.randn(*SHAPE, generator=generator)
    return FirstFrameCondition(clean), noise


def test_apply_replaces_only_the_conditioned_frames() -> None:
    condition, x = make(frames=2)
    out = condition.apply(x)
    assert torch.equal(out[:, :, :2], condition.latent)
    assert torch.equal(out[:, :, 2:], x[:, :, 2:])
    assert not torch.equal(x[:, :, :2], condition.latent)  # input left untouched
    assert condition.apply(x.double()).dtype == torch.float64
    assert condition.num_frames == 2
    assert condition.frame_mask(4).tolist() == [True, True, False, False]


def test_frame_sigmas() -> None:
    condition, _ = make()
    per_frame = condition.frame_sigmas(torch.tensor([0.8, 0.3]), 4)
    expected = torch.tensor([[0.0, 0.8, 0.8, 0.8], [0.0, 0.3, 0.3, 0.3]])
    assert torch.equal(per_frame, expected)


@pytest.mark.parametrize("sampler", [EulerSampler(), HeunSampler()], ids=["euler", "heun"])
@pytest.mark.parametrize("frames", [1, 2])
def test_sampling_keeps_conditioned_frames_exact(sampler: Sampler, frames: int) -> None:
    condition, noise = make(frames)
    target = torch.full(SHAPE, 3.0)
    seen_inputs: list[torch.Tensor] = []

    def velocity(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        seen_inputs.append(x[:, :, :frames].clone())
        return (x - target) / sigma.view(-1, 1, 1, 1, 1)  # straight lines to target

    steps: list[int] = []
    sigmas = FlowMatchSchedule(TINY.diffusion).sigmas(6, 100)
    result = condition.sample(
        sampler, velocity, noise, sigmas, callback=lambda step, s, x: steps.append(step)
    )
    assert torch.equal(result[:, :, :frames], condition.latent)
    torch.testing.assert_close(result[:, :, frames:], target[:, :, frames:], rtol=0, atol=1e-5)
    assert all(torch.equal(seen, condition.latent) for seen in seen_inputs)
    assert steps == list(range(6))


def test_conditioned_velocity_is_zero_on_clean_frames_and_per_frame_sigma() -> None:
    condition, x = make()
    received: list[torch.Tensor] = []

    def velocity(latents: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        received.append(sigma)
        return torch.ones_like(latents)

    wrapped = condition.conditioned(velocity, per_frame_sigma=True)
    v = wrapped(x, torch.tensor([0.7, 0.7]))
    assert torch.all(v[:, :, 0] == 0)
    assert torch.all(v[:, :, 1:] == 1)
    assert torch.equal(received[0], torch.tensor([[0.0] + [0.7] * 4] * 2))
    condition.conditioned(velocity)(x, torch.tensor([0.7, 0.7]))
    assert received[1].shape == (2,)


def test_callback_chains_and_can_replace() -> None:
    condition, x = make()
    hook = condition.callback(then=lambda step, sigma, latents: latents + 1)
    out = hook(0, 0.5, x)
    assert torch.equal(out, condition.apply(x) + 1)
    keep = condition.callback(then=lambda step, sigma, latents: None)
    assert torch.equal(keep(0, 0.5, x), condition.apply(x))
    assert torch.equal(condition.callback()(0, 0.5, x), condition.apply(x))


def test_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"must be \[B, C, K, h, w\] with K >= 1"):
        FirstFrameCondition(torch.zeros(2, 4, 3, 3))
    with pytest.raises(ValueError, match="K >= 1"):
        FirstFrameCondition(torch.zeros(2, 4, 0, 3, 3))
    condition, _ = make(frames=2)
    with pytest.raises(ValueError, match=r"expected \[2, 4, T >= 2, 3, 3\]"):
        condition.apply(torch.zeros(2, 4, 1, 3, 3))
    with pytest.raises(ValueError, match=r"latents of shape \(2, 4, 5, 6, 6\) do not fit"):
        condition.apply(torch.zeros(2, 4, 5, 6, 6))
