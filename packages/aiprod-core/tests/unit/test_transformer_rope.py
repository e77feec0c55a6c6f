"""3D RoPE: positions of a grid, rotation angles per axis, and the relative-position property."""

from __future__ import annotations

import math

import pytest
import torch

from aiprod_core.transformer import apply_rope, grid_positions, rope_frequencies


def test_grid_positions_enumerate_time_major() -> None:
    positions = grid_positions((2, 2, 3))
    assert positions.shape == (12, 3)
    assert positions.dtype == torch.float32
    assert positions[:4].tolist() == [[0, 0, 0], [0, 0, 1], [0, 0, 2], [0, 1, 0]]
    assert positions[-1].tolist() == [1, 1, 2]


def test_frequencies_split_head_dim_by_axis() -> None:
    head_dim = 12  # two rotation pairs per axis
    positions = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    cos, sin = rope_frequencies(positions, head_dim, theta=100.0)
    assert cos.shape == sin.shape == (3, head_dim // 2)
    # Axis frequencies are 1 and 100 ** (-2 / 4) = 0.1.
    expected = torch.tensor([1.0, 0.1])
    angles = torch.atan2(sin, cos)
    torch.testing.assert_close(angles[0], torch.cat([expected, torch.zeros(4)]))
    torch.testing.assert_close(angles[1], torch.cat([torch.zeros(2), expected, torch.zeros(2)]))
    torch.testing.assert_close(angles[2], torch.cat([torch.zeros(4), expected]))


def test_head_dim_must_split_in_three_pairs() -> None:
    with pytest.raises(ValueError, match="divisible by 6"):
        rope_frequencies(torch.zeros(1, 3), head_dim=8)


def test_rotation_of_one_pair() -> None:
    x = torch.tensor([1.0, 0.0, 0.0, 2.0, 1.0, 1.0]).reshape(1, 1, 1, 6)
    angle = math.pi / 2
    cos = torch.tensor([[math.cos(angle), 1.0, 1.0]])
    sin = torch.tensor([[math.sin(angle), 0.0, 0.0]])
    out = apply_rope(x, (cos, sin)).flatten()
    torch.testing.assert_close(out, torch.tensor([0.0, 1.0, 0.0, 2.0, 1.0, 1.0]))


def test_rotation_preserves_norm_and_dtype() -> None:
    q = torch.randn(2, 3, 24, 12, dtype=torch.bfloat16)
    rope = rope_frequencies(grid_positions((2, 3, 4)), head_dim=12)
    out = apply_rope(q, rope)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(
        out.float().norm(dim=-1), q.float().norm(dim=-1), rtol=1e-2, atol=1e-2
    )


def test_scores_depend_only_on_position_differences() -> None:
    generator = torch.Generator().manual_seed(0)
    head_dim = 24
    q = torch.randn(1, 2, 30, head_dim, generator=generator, dtype=torch.float64)
    k = torch.randn(1, 2, 30, head_dim, generator=generator, dtype=torch.float64)
    positions = grid_positions((2, 3, 5)).double()

    def scores(pos: torch.Tensor) -> torch.Tensor:
        cos, sin = rope_frequencies(pos, head_dim)
        rope = (cos.double(), sin.double())
        return apply_rope(q, rope) @ apply_rope(k, rope).transpose(-1, -2)

    base = scores(positions)
    shifted = scores(positions + torch.tensor([5.0, 7.0, 11.0], dtype=torch.float64))
    torch.testing.assert_close(shifted, base, rtol=1e-4, atol=1e-4)
    # Moving only the keys' positions changes the scores: the rotation is not a no-op.
    cos, sin = rope_frequencies(positions, head_dim)
    cos_k, sin_k = rope_frequencies(positions + 1.0, head_dim)
    moved = apply_rope(q, (cos.double(), sin.double())) @ apply_rope(
        k, (cos_k.double(), sin_k.double())
    ).transpose(-1, -2)
    assert (moved - base).abs().max() > 1e-2
