"""Conditioning: clean frames at any latent index stay clean through sampling, their tokens
get sigma 0, and the other frames move."""

from __future__ import annotations

import pytest
import torch

from aiprod_core.diffusion import (
    Conditioning,
    EulerSampler,
    FlowMatchSchedule,
    FrameCondition,
    HeunSampler,
    Sampler,
    token_sigmas,
)
from aiprod_core.models.presets import TINY

SHAPE = (2, 4, 5, 4, 4)  # B, C, T, h, w
PATCH = (1, 2, 2)  # 4 tokens per latent frame


def clean(frames: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 4, frames, 4, 4, generator=torch.Generator().manual_seed(seed))


def make(*conditions: tuple[int, int]) -> tuple[Conditioning, torch.Tensor]:
    """Conditions given as (first latent frame, number of frames)."""
    parts = [FrameCondition(clean(k, seed=i), frame=f) for i, (f, k) in enumerate(conditions)]
    noise = torch.randn(*SHAPE, generator=torch.Generator().manual_seed(99))
    return Conditioning(parts, PATCH), noise


def test_apply_replaces_only_the_conditioned_frames() -> None:
    conditioning, x = make((0, 2), (4, 1))  # continuation of 2 frames plus the last frame
    out = conditioning.apply(x)
    first, last = conditioning.conditions
    assert torch.equal(out[:, :, :2], first.latent)
    assert torch.equal(out[:, :, 4:], last.latent)
    assert torch.equal(out[:, :, 2:4], x[:, :, 2:4])
    assert not torch.equal(x[:, :, :2], first.latent)  # the input is left untouched
    assert conditioning.apply(x.double()).dtype == torch.float64
    assert conditioning.frame_mask(5).tolist() == [True, True, False, False, True]
    assert conditioning.last_frame == 4


def test_token_sigmas_are_zero_on_clean_frames_tokens() -> None:
    sigma = torch.tensor([0.8, 0.3])
    per_token = token_sigmas(sigma, torch.tensor([True, False, True]), (1, 2, 2), spatial=2)
    expected = torch.tensor([[0, 0, 0.8, 0.8, 0, 0], [0, 0, 0.3, 0.3, 0, 0]])
    assert torch.equal(per_token, expected)
    per_item = token_sigmas(sigma, torch.tensor([[True, False], [False, False]]), (1, 1, 1), 1)
    assert per_item.tolist() == [[0.0, pytest.approx(0.8)], [pytest.approx(0.3)] * 2]
    # a token of two latent frames is clean only when both are
    pairs = token_sigmas(sigma[:1], torch.tensor([True, False, True, True]), (2, 1, 1), 1)
    assert pairs.tolist() == [[pytest.approx(0.8), 0.0]]
    with pytest.raises(ValueError, match="3 latent frames are not whole patches of length 2"):
        token_sigmas(sigma, torch.tensor([True, False, True]), (2, 1, 1), 1)


@pytest.mark.parametrize("sampler", [EulerSampler(), HeunSampler()], ids=["euler", "heun"])
@pytest.mark.parametrize("conditions", [[(0, 1)], [(0, 2)], [(0, 1), (4, 1)], [(2, 1)]])
def test_sampling_keeps_conditioned_frames_exact(
    sampler: Sampler, conditions: list[tuple[int, int]]
) -> None:
    conditioning, noise = make(*conditions)
    mask = conditioning.frame_mask(5)
    target = torch.full(SHAPE, 3.0)
    seen: list[torch.Tensor] = []

    def velocity(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        seen.append(sigma)
        tokens = sigma.view(2, 5, 4)[..., 0]  # per latent frame
        assert torch.all(tokens[:, mask] == 0)
        per_frame = tokens.view(2, 1, 5, 1, 1).clamp(min=1e-6)
        return (x - target) / per_frame  # straight lines to target

    steps: list[int] = []
    sigmas = FlowMatchSchedule(TINY.diffusion).sigmas(6, 100)
    result = conditioning.sample(
        sampler, velocity, noise, sigmas, callback=lambda step, s, x: steps.append(step)
    )
    applied = conditioning.apply(result)
    assert torch.equal(result[:, :, mask], applied[:, :, mask])  # exactly the clean latents
    torch.testing.assert_close(result[:, :, ~mask], target[:, :, ~mask], rtol=0, atol=1e-5)
    assert all(s.shape == (2, 20) for s in seen)
    assert steps == list(range(6))


def test_conditioned_velocity_is_zero_on_clean_frames() -> None:
    conditioning, x = make((0, 1))
    received: list[torch.Tensor] = []

    def velocity(latents: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        received.append(sigma)
        return torch.ones_like(latents)

    v = conditioning.conditioned(velocity)(x, torch.tensor([0.7, 0.7]))
    assert torch.all(v[:, :, 0] == 0)
    assert torch.all(v[:, :, 1:] == 1)
    assert torch.equal(received[0], torch.tensor([[0.0] * 4 + [0.7] * 16] * 2))


def test_callback_chains_and_can_replace() -> None:
    conditioning, x = make((0, 1))
    hook = conditioning.callback(then=lambda step, sigma, latents: latents + 1)
    assert torch.equal(hook(0, 0.5, x), conditioning.apply(x) + 1)
    keep = conditioning.callback(then=lambda step, sigma, latents: None)
    assert torch.equal(keep(0, 0.5, x), conditioning.apply(x))
    assert torch.equal(conditioning.callback()(0, 0.5, x), conditioning.apply(x))


def test_rejects_bad_conditions() -> None:
    with pytest.raises(ValueError, match=r"must be \[B, C, K, h, w\] with K >= 1"):
        FrameCondition(torch.zeros(2, 4, 3, 3))
    with pytest.raises(ValueError, match="K >= 1"):
        FrameCondition(torch.zeros(2, 4, 0, 3, 3))
    with pytest.raises(ValueError, match="frame must be >= 0, got -1"):
        FrameCondition(clean(1), frame=-1)
    with pytest.raises(ValueError, match="at least one FrameCondition"):
        Conditioning([], PATCH)
    with pytest.raises(
        ValueError, match=r"latent frame 1 is conditioned twice \(conditions 0 and 1\)"
    ):
        Conditioning([FrameCondition(clean(2)), FrameCondition(clean(1), frame=1)], PATCH)
    conditioning, _ = make((3, 2))
    with pytest.raises(ValueError, match=r"expected \[2, 4, T > 4, 4, 4\]"):
        conditioning.apply(torch.zeros(2, 4, 4, 4, 4))
    with pytest.raises(ValueError, match=r"latents of shape \(2, 4, 5, 6, 6\) do not fit"):
        conditioning.apply(torch.zeros(2, 4, 5, 6, 6))
