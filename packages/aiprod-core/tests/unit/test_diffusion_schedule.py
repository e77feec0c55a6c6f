"""FlowMatchSchedule: shift formula, sigma grids, training sigmas, noising identities."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from aiprod_core.diffusion import (
    FlowMatchSchedule,
    Scheduler,
    add_noise,
    broadcast_sigma,
    predict_x0,
    velocity_target,
)
from aiprod_core.models.configs import DiffusionConfig
from aiprod_core.models.presets import TINY

CONFIG = DiffusionConfig(
    base_shift=0.5, max_shift=1.15, base_tokens=256, max_tokens=4096, terminal=None
)


def logit(p: torch.Tensor) -> torch.Tensor:
    return torch.log(p) - torch.log1p(-p)


def test_mu_is_the_line_through_the_anchors_extended() -> None:
    schedule = FlowMatchSchedule(CONFIG)
    assert schedule.mu(256) == pytest.approx(0.5)
    assert schedule.mu(4096) == pytest.approx(1.15)
    assert schedule.mu(2176) == pytest.approx(0.825)  # half way
    slope = 0.65 / 3840
    assert schedule.mu(1) == pytest.approx(0.5 - 255 * slope)  # extended below
    assert schedule.mu(8192) == pytest.approx(1.15 + 4096 * slope)  # and above
    with pytest.raises(ValueError, match="num_tokens must be >= 1, got 0"):
        schedule.mu(0)


def test_terminal_stretch_ends_the_grid_at_terminal() -> None:
    stretched = FlowMatchSchedule(CONFIG.model_copy(update={"terminal": 0.1}))
    plain = FlowMatchSchedule(CONFIG)
    for steps, tokens in ((4, 256), (30, 1000), (40, 8192)):
        sigmas, base = stretched.sigmas(steps, tokens), plain.sigmas(steps, tokens)
        assert sigmas[0].item() == 1.0
        assert sigmas[-1].item() == 0.0
        assert sigmas[-2].item() == pytest.approx(0.1, abs=1e-6)
        assert torch.all(sigmas[1:] < sigmas[:-1])
        # 1 - sigma is scaled by one factor: ratios of (1 - sigma) are the plain grid's
        ratio = (1 - sigmas[1:-1].double()) / (1 - base[1:-1].double())
        torch.testing.assert_close(
            ratio, torch.full_like(ratio, ratio[0].item()), rtol=1e-4, atol=0
        )
    assert TINY.diffusion.terminal is None
    assert DiffusionConfig().terminal == 0.1


def test_shift_formula_at_known_points() -> None:
    sigma = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64)
    mu = 0.7
    shifted = FlowMatchSchedule.shift(sigma, mu)
    inner = sigma[1:-1]
    expected = math.exp(mu) / (math.exp(mu) + (1 / inner - 1))
    torch.testing.assert_close(shifted[1:-1], expected)
    assert shifted[0].item() == 0.0
    assert shifted[-1].item() == 1.0
    assert shifted[2].item() == pytest.approx(math.exp(mu) / (math.exp(mu) + 1))
    torch.testing.assert_close(logit(shifted[1:-1]), logit(inner) + mu)  # a logit translation


def test_sigmas_endpoints_dtype_and_monotonicity() -> None:
    schedule = FlowMatchSchedule(TINY.diffusion)
    assert isinstance(schedule, Scheduler)
    for steps in (1, 2, 7, 30, 200):
        for tokens in (1, 64, 300, 1024, 4096):
            sigmas = schedule.sigmas(steps, tokens)
            assert sigmas.dtype == torch.float32
            assert sigmas.shape == (steps + 1,)
            assert sigmas[0].item() == 1.0
            assert sigmas[-1].item() == 0.0
            assert torch.all(sigmas[1:] < sigmas[:-1])


def test_sigmas_exact_values() -> None:
    schedule = FlowMatchSchedule(CONFIG)
    sigmas = schedule.sigmas(4, 256)  # mu = 0.5 on the grid 1, .75, .5, .25, 0
    e = math.exp(0.5)
    expected = [1.0, e / (e + 1 / 3), e / (e + 1), e / (e + 3), 0.0]
    assert sigmas.tolist() == pytest.approx(expected, abs=1e-7)


def test_shift_grows_with_token_count() -> None:
    schedule = FlowMatchSchedule(CONFIG)
    grids = [schedule.sigmas(10, tokens) for tokens in (256, 1000, 2000, 4096)]
    for smaller, larger in itertools.pairwise(grids):
        assert torch.all(larger[1:-1] > smaller[1:-1])
    below = schedule.sigmas(10, 8)  # extended below the first anchor: less shift
    assert torch.all(below[1:-1] < grids[0][1:-1])


def test_rejects_zero_steps() -> None:
    with pytest.raises(ValueError, match="steps must be >= 1, got 0"):
        FlowMatchSchedule(CONFIG).sigmas(0, 100)


def test_training_sigmas_are_shifted_logit_normal() -> None:
    config = DiffusionConfig(
        logit_normal_mean=-0.4, logit_normal_std=1.3, base_tokens=64, max_tokens=1024
    )
    schedule = FlowMatchSchedule(config)
    generator = torch.Generator().manual_seed(0)
    sigmas = schedule.sample_training_sigmas(200_000, 512, generator=generator)
    assert sigmas.shape == (200_000,)
    assert sigmas.dtype == torch.float32
    assert torch.all((sigmas > 0) & (sigmas < 1))
    unshifted_logits = logit(sigmas.double()) - schedule.mu(512)
    assert unshifted_logits.mean().item() == pytest.approx(-0.4, abs=0.01)
    assert unshifted_logits.std().item() == pytest.approx(1.3, abs=0.01)


def test_training_sigmas_follow_the_generator() -> None:
    schedule = FlowMatchSchedule(TINY.diffusion)
    first = schedule.sample_training_sigmas(8, 100, torch.Generator().manual_seed(7))
    again = schedule.sample_training_sigmas(8, 100, torch.Generator().manual_seed(7))
    other = schedule.sample_training_sigmas(8, 100, torch.Generator().manual_seed(8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    torch.manual_seed(1)
    unseeded = schedule.sample_training_sigmas(4, 100, device="cpu")
    assert unseeded.device.type == "cpu"
    with pytest.raises(ValueError, match="batch must be >= 1"):
        schedule.sample_training_sigmas(0, 100)


def test_add_noise_and_velocity_identities() -> None:
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 4, 2, 5, 5, generator=generator)
    noise = torch.randn(3, 4, 2, 5, 5, generator=generator)
    sigma = torch.tensor([0.0, 0.3, 1.0])
    xt = add_noise(x0, noise, sigma)
    assert torch.equal(xt[0], x0[0])
    assert torch.equal(xt[2], noise[2])
    torch.testing.assert_close(xt[1], 0.7 * x0[1] + 0.3 * noise[1])
    v = velocity_target(x0, noise)
    torch.testing.assert_close(v, noise - x0)
    torch.testing.assert_close(predict_x0(xt, v, sigma), x0)  # x_t - sigma v = x0
    # moving along the velocity by d sigma lands on the path at sigma + d sigma
    torch.testing.assert_close(xt - 0.2 * v, add_noise(x0, noise, sigma - 0.2))
    schedule = FlowMatchSchedule(CONFIG)
    torch.testing.assert_close(schedule.add_noise(x0, noise, 0.5), (x0 + noise) / 2)
    assert torch.equal(schedule.velocity_target(x0, noise), v)


def test_add_noise_per_frame_sigma_and_dtype() -> None:
    x0 = torch.zeros(2, 3, 4, 2, 2, dtype=torch.bfloat16)
    noise = torch.ones_like(x0)
    per_frame = torch.tensor([[0.0, 0.25, 0.5, 1.0], [1.0, 1.0, 0.0, 0.0]])
    xt = add_noise(x0, noise, per_frame)
    assert xt.dtype == torch.bfloat16
    assert xt[0, :, :, 0, 0].float().tolist() == [[0.0, 0.25, 0.5, 1.0]] * 3
    assert xt[1, 1, :, 1, 1].float().tolist() == [1.0, 1.0, 0.0, 0.0]


def test_broadcast_sigma_shapes() -> None:
    x = torch.zeros(2, 3, 4, 5, 6)
    assert broadcast_sigma(0.5, x).shape == ()
    assert broadcast_sigma(torch.ones(2), x).shape == (2, 1, 1, 1, 1)
    assert broadcast_sigma(torch.ones(2, 4), x).shape == (2, 1, 4, 1, 1)
    assert broadcast_sigma(torch.ones(2, 1, 1, 1, 1), x).shape == (2, 1, 1, 1, 1)
    assert broadcast_sigma(torch.ones(2, 3), torch.zeros(2, 3)).shape == (2, 3)
    with pytest.raises(ValueError, match=r"sigma of shape \(2, 1, 1\) does not fit"):
        broadcast_sigma(torch.ones(2, 1, 1), x)
