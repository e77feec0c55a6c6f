"""Euler and Heun against flows whose exact solution is known in closed form.

Straight-line flow: every sample travels ``x(sigma) = x0 + sigma * c``; the exact field is
``v(x, sigma) = (x - x0) / sigma``, constant along each path, so both samplers are exact
on any grid (Heun's last step is Euler, so the singular sigma = 0 is never evaluated).

Gaussian-to-Gaussian flow: data ``N(m, s^2)`` (per dimension), noise ``N(0, 1)``,
``x = (1 - sigma) x0 + sigma eps``. The marginal-preserving velocity is
``v(x, sigma) = (sigma - (1 - sigma) s^2) / V * (x - (1 - sigma) m) - m`` with
``V = (1 - sigma)^2 s^2 + sigma^2``, and the ODE carries noise ``z`` to ``m + s z`` along
``x(sigma) = (1 - sigma) m + sqrt(V) z``.
"""

from __future__ import annotations

import pytest
import torch

from aiprod_core.diffusion import EulerSampler, FlowMatchSchedule, HeunSampler, Sampler
from aiprod_core.models.presets import TINY

MEAN = torch.tensor([1.5, -2.0, 0.3], dtype=torch.float64)
STD = torch.tensor([0.5, 2.0, 0.8], dtype=torch.float64)


def gaussian_velocity(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    s = sigma.to(x.dtype).view(-1, 1)
    a = 1 - s
    variance = a**2 * STD**2 + s**2
    return (s - a * STD**2) / variance * (x - a * MEAN) - MEAN


def gaussian_solution(z: torch.Tensor, sigma: float) -> torch.Tensor:
    a = 1 - sigma
    return a * MEAN + torch.sqrt(a**2 * STD**2 + sigma**2) * z


def noise(batch: int = 256) -> torch.Tensor:
    return torch.randn(batch, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def random_grid(steps: int, seed: int) -> torch.Tensor:
    inner = torch.rand(steps - 1, generator=torch.Generator().manual_seed(seed))
    return torch.cat([torch.ones(1), inner.sort(descending=True).values, torch.zeros(1)])


@pytest.mark.parametrize("sampler", [EulerSampler(), HeunSampler()], ids=["euler", "heun"])
@pytest.mark.parametrize("steps", [1, 2, 5, 13])
def test_straight_line_flow_is_exact_for_any_grid(sampler: Sampler, steps: int) -> None:
    generator = torch.Generator().manual_seed(steps)
    x0 = torch.randn(4, 2, 3, 4, 4, generator=generator)
    direction = torch.randn(4, 2, 3, 4, 4, generator=generator)

    def velocity(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        assert sigma.shape == (4,)
        assert sigma.dtype == torch.float32
        assert torch.all(sigma > 0), "the field is never evaluated at sigma = 0"
        return (x - x0) / sigma.view(-1, 1, 1, 1, 1)

    result = sampler.sample(velocity, x0 + direction, random_grid(steps, seed=steps))
    torch.testing.assert_close(result, x0, rtol=0, atol=1e-5)


def test_euler_converges_to_the_gaussian_map() -> None:
    z = noise()
    exact = MEAN + STD * z
    result = EulerSampler().sample(gaussian_velocity, z, torch.linspace(1, 0, 4001))
    torch.testing.assert_close(result, exact, rtol=0, atol=5e-3)


def test_heun_lands_on_the_gaussian_map_with_few_steps() -> None:
    z = noise()
    exact = MEAN + STD * z
    grid = torch.linspace(1, 0, 41, dtype=torch.float64)
    heun = HeunSampler().sample(gaussian_velocity, z, grid)
    euler = EulerSampler().sample(gaussian_velocity, z, grid)
    torch.testing.assert_close(heun, exact, rtol=0, atol=5e-3)
    assert (heun - exact).abs().max() < 0.05 * (euler - exact).abs().max()


def error(sampler: Sampler, steps: int) -> float:
    z = noise()
    grid = torch.linspace(1, 0, steps + 1, dtype=torch.float64)
    return (sampler.sample(gaussian_velocity, z, grid) - (MEAN + STD * z)).abs().max().item()


def test_orders_of_convergence() -> None:
    euler_ratio = error(EulerSampler(), 20) / error(EulerSampler(), 40)
    heun_ratio = error(HeunSampler(), 20) / error(HeunSampler(), 40)
    assert euler_ratio == pytest.approx(2.0, rel=0.15)  # first order
    assert heun_ratio == pytest.approx(4.0, rel=0.15)  # second order


def test_callback_sees_every_step_on_the_exact_path() -> None:
    z = noise(8)
    seen: list[tuple[int, float]] = []

    def callback(step: int, sigma: float, x: torch.Tensor) -> None:
        seen.append((step, sigma))
        torch.testing.assert_close(x, gaussian_solution(z, sigma), rtol=0, atol=5e-3)

    grid = FlowMatchSchedule(TINY.diffusion).sigmas(60, 256).double()
    HeunSampler().sample(gaussian_velocity, z, grid, callback=callback)
    assert [step for step, _ in seen] == list(range(60))
    assert [sigma for _, sigma in seen] == pytest.approx(grid[1:].tolist())


@pytest.mark.parametrize("sampler", [EulerSampler(), HeunSampler()], ids=["euler", "heun"])
def test_callback_can_replace_x(sampler: Sampler) -> None:
    result = sampler.sample(
        lambda x, sigma: torch.ones_like(x),
        torch.zeros(2, 3),
        torch.tensor([1.0, 0.5, 0.0]),
        callback=lambda step, sigma, x: torch.full_like(x, 10.0 * (step + 1)),
    )
    assert torch.equal(result, torch.full((2, 3), 20.0))


def test_function_evaluations_and_dtype() -> None:
    calls: list[float] = []

    def velocity(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        calls.append(sigma[0].item())
        return torch.ones_like(x, dtype=torch.bfloat16)

    x = torch.zeros(1, 4)
    out = HeunSampler().sample(velocity, x, torch.tensor([1.0, 0.5, 0.0]))
    assert calls == [1.0, 0.5, 0.5]  # 2n - 1 evaluations: the last step is Euler
    assert out.dtype == torch.float32
    assert torch.equal(out, torch.full((1, 4), -1.0))
    calls.clear()
    out = HeunSampler().sample(velocity, x, torch.tensor([1.0, 0.5, 0.25]))
    assert calls == [1.0, 0.5, 0.5, 0.25]  # no final sigma = 0: Heun all the way
    assert torch.equal(out, torch.full((1, 4), -0.75))


@pytest.mark.parametrize("sampler", [EulerSampler(), HeunSampler()], ids=["euler", "heun"])
def test_rejects_a_grid_without_an_end(sampler: Sampler) -> None:
    with pytest.raises(ValueError, match="sigmas needs at least 2 values"):
        sampler.sample(lambda x, s: x, torch.zeros(1), torch.ones(1))
