"""Patchifier3D cuts latents into tokens and puts them back exactly; bad sizes say what fits."""

from __future__ import annotations

import pytest
import torch

from aiprod_core.errors import AiprodError
from aiprod_core.transformer import Patchifier, Patchifier3D, PatchShapeError


@pytest.mark.parametrize(
    ("patch", "size"),
    [
        ((1, 2, 2), (1, 4, 6)),
        ((1, 2, 2), (5, 10, 4)),
        ((2, 1, 3), (4, 3, 9)),
        ((1, 1, 1), (3, 5, 7)),
    ],
)
def test_round_trip_is_exact(patch: tuple[int, int, int], size: tuple[int, int, int]) -> None:
    patchifier = Patchifier3D(patch)
    latents = torch.randn(2, 3, *size)
    tokens, grid = patchifier.patchify(latents)
    expected_grid = tuple(s // p for s, p in zip(size, patch, strict=True))
    assert grid == expected_grid
    assert tokens.shape == (2, grid[0] * grid[1] * grid[2], 3 * patch[0] * patch[1] * patch[2])
    assert torch.equal(patchifier.unpatchify(tokens, grid), latents)


def test_token_layout_is_time_major_then_rows_then_columns() -> None:
    patchifier = Patchifier3D((1, 2, 2))
    latents = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 1, 2, 4, 4)
    tokens, grid = patchifier.patchify(latents)
    assert grid == (2, 2, 2)
    # Token 0: frame 0, top-left 2x2 patch; token 1: frame 0, top-right; token 4: frame 1.
    assert tokens[0, 0].tolist() == [0.0, 1.0, 4.0, 5.0]
    assert tokens[0, 1].tolist() == [2.0, 3.0, 6.0, 7.0]
    assert tokens[0, 2].tolist() == [8.0, 9.0, 12.0, 13.0]
    assert tokens[0, 4].tolist() == [16.0, 17.0, 20.0, 21.0]


def test_channels_are_outermost_in_a_token() -> None:
    patchifier = Patchifier3D((1, 1, 2))
    latents = torch.tensor([[[[[1.0, 2.0]]], [[[10.0, 20.0]]]]])  # [1, 2, 1, 1, 2]
    tokens, _ = patchifier.patchify(latents)
    assert tokens.tolist() == [[[1.0, 2.0, 10.0, 20.0]]]


def test_rejected_height_names_valid_values() -> None:
    patchifier = Patchifier3D((1, 2, 2))
    with pytest.raises(PatchShapeError) as info:
        patchifier.patchify(torch.zeros(1, 4, 3, 5, 6))
    message = str(info.value)
    assert "latent height 5 is not a multiple of the patch height 2" in message
    assert "nearest valid: 4 or 6" in message
    assert "width" not in message.split(":", 1)[1]
    assert isinstance(info.value, AiprodError)
    assert isinstance(info.value, ValueError)


def test_every_bad_axis_is_reported() -> None:
    patchifier = Patchifier3D((2, 4, 4))
    with pytest.raises(PatchShapeError) as info:
        patchifier.grid((3, 2, 9))
    message = str(info.value)
    assert (
        "latent frames 3 is not a multiple of the patch length 2 (nearest valid: 2 or 4)" in message
    )
    assert "latent height 2 is not a multiple of the patch height 4 (nearest valid: 4)" in message
    assert (
        "latent width 9 is not a multiple of the patch width 4 (nearest valid: 8 or 12)" in message
    )


def test_grid_accepts_multiples() -> None:
    assert Patchifier3D((1, 2, 2)).grid((5, 10, 4)) == (5, 5, 2)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="three positive integers"):
        Patchifier3D((1, 0, 2))
    patchifier = Patchifier3D((1, 2, 2))
    with pytest.raises(ValueError, match=r"latents must be \[B, C, T, H, W\]"):
        patchifier.patchify(torch.zeros(1, 4, 4, 4))
    with pytest.raises(ValueError, match="do not match grid"):
        patchifier.unpatchify(torch.zeros(1, 5, 8), (1, 2, 2))
    with pytest.raises(ValueError, match="do not match grid"):
        patchifier.unpatchify(torch.zeros(1, 4, 7), (1, 2, 2))


def test_satisfies_protocol() -> None:
    patchifier: Patchifier = Patchifier3D((1, 2, 2))
    assert patchifier.patch_size == (1, 2, 2)
    assert repr(patchifier) == "Patchifier3D(patch_size=(1, 2, 2))"
