"""Tiled decoding: exact with a receptive-field overlap, correct bookkeeping, clear errors.

Stated tolerance: with ``overlap >= vae.receptive_field().exact_overlap()`` tiled decoding
only blends pixels whose whole receptive field lies inside their tile, so it equals untiled
decoding up to float32 rounding; we assert a max abs difference below 1e-5 (measured on the
tiny preset: about 1e-7 in space and 1e-6 in time). One latent less of overlap than that
lets pixels that saw padding into the blend, and the difference becomes visible, which shows
the computed receptive field is tight.

Blended mode is approximate. Stated bounds (max abs difference from untiled decoding on the
[-1, 1] scale, untrained tiny preset, its blended overlaps of 16 latents in space and 11-12
in time): below 0.12 across spatial tiles (measured 0.056-0.073 over ten seeds) and below
0.65 across temporal tiles (measured 0.42-0.50); mean abs below 0.004 and 0.06 (measured
0.002 and 0.04). A decoder whose influence fades faster than the untrained one's does better.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from aiprod_core.models.presets import TINY
from aiprod_core.vae import CausalConv3d, CausalVideoVAE, ReceptiveField, TileError
from aiprod_core.vae.blocks import DepthToSpace
from aiprod_core.vae.tile_plan import default_overlap
from aiprod_core.vae.tiling import (
    decode_tiled,
    edge_ramp,
    receptive_field,
    temporal_tiles,
    tile_starts,
)

EXACT_TOLERANCE = 1e-5
BLENDED_SPACE_MAX, BLENDED_SPACE_MEAN = 0.12, 0.004
BLENDED_TIME_MAX, BLENDED_TIME_MEAN = 0.65, 0.06


@pytest.fixture(scope="module")
def vae() -> CausalVideoVAE:
    torch.manual_seed(0)
    return CausalVideoVAE(TINY.vae).eval()


def latents(frames: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, 8, frames, height, width, generator=generator)


def max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


def test_tiny_receptive_field_and_exact_overlap(vae: CausalVideoVAE) -> None:
    field = vae.receptive_field()
    assert (field.temporal_compression, field.spatial_compression) == (2, 4)
    t, h, w = field.exact_overlap()
    assert h == w == -(-(2 * field.margin_height + 1) // 4)
    assert t == field.context_frames >= 1


@pytest.mark.parametrize("axis", [1, 2])
def test_spatial_tiles_with_exact_overlap_match_untiled(vae: CausalVideoVAE, axis: int) -> None:
    exact = vae.receptive_field().exact_overlap()[axis]
    size, tile, overlap = [1, 1, 1], [1, 1, 1], [0, 0, 0]
    size[axis], tile[axis], overlap[axis] = exact + 6, exact + 3, exact
    z = latents(2, size[1], size[2])
    short = [0, 0, 0]
    short[axis] = exact - 1
    with torch.no_grad():
        full = vae.decode(z)
        tiled = vae.decode_tiled(z, (2, tile[1], tile[2]), (0, overlap[1], overlap[2]))
        one_short = vae.decode_tiled(z, (2, tile[1], tile[2]), (0, short[1], short[2]))
    assert max_difference(full, tiled) < EXACT_TOLERANCE
    assert max_difference(full, one_short) > 10 * EXACT_TOLERANCE


def test_temporal_tiles_with_exact_context_match_untiled(vae: CausalVideoVAE) -> None:
    context = vae.receptive_field().exact_overlap()[0]
    z = latents(context + 12, 2, 2, seed=1)
    tile = (context + 5, 2, 2)
    with torch.no_grad():
        full = vae.decode(z)
        tiled = vae.decode_tiled(z, tile, (context, 0, 0))
        one_short = vae.decode_tiled(z, tile, (context - 1, 0, 0))
    assert max_difference(full, tiled) < EXACT_TOLERANCE
    assert max_difference(full, one_short) > 10 * EXACT_TOLERANCE


def test_default_tiles_are_exact(vae: CausalVideoVAE) -> None:
    context = vae.receptive_field().exact_overlap()[0]
    long = latents(2 * context + 3, 1, 1, seed=2)
    with torch.no_grad():
        assert max_difference(vae.decode(long), vae.decode_tiled(long)) < EXACT_TOLERANCE
        small = latents(3, 2, 3, seed=3)
        assert torch.equal(vae.decode(small), vae.decode_tiled(small))


def test_small_tiles_keep_shape_dtype_and_range(vae: CausalVideoVAE) -> None:
    z = latents(5, 6, 7, seed=4)
    with torch.no_grad():
        tiled = vae.decode_tiled(z, (3, 3, 4), (1, 1, 2))
        capped = vae.decode_tiled(z, (4, 4, 4))  # overlap defaults to half the tile
        bf16 = vae.to(torch.bfloat16).decode_tiled(
            z[:, :, :3, :3, :3].bfloat16(), (2, 2, 2), (1, 1, 1)
        )
        vae.float()
    assert tiled.shape == capped.shape == (1, 3, 9, 24, 28)
    assert bf16.shape == (1, 3, 5, 12, 12)
    assert bf16.dtype == torch.bfloat16
    for video in (tiled, capped, bf16):
        assert torch.isfinite(video).all()
        assert video.abs().max() <= 1.0


def causal_nearest(z: torch.Tensor) -> torch.Tensor:
    """A stand-in decoder with no spatial reach and one latent frame of temporal reach."""
    video = z[:, :3].repeat_interleave(2, dim=2)[:, :, 1:]
    video = video + torch.cat([video[:, :, :1], video[:, :, :-1]], dim=2)  # look one back
    return video.repeat_interleave(4, dim=3).repeat_interleave(4, dim=4)


POINTWISE = ReceptiveField(
    context_frames=1, margin_height=0, margin_width=0, temporal_compression=2, spatial_compression=4
)


@pytest.mark.parametrize(
    ("tile", "overlap"),
    [
        ((2, 1, 1), (1, 0, 0)),
        ((3, 2, 3), (1, 1, 1)),
        ((4, 3, 2), (2, 2, 1)),
        ((9, 9, 9), (0, 0, 0)),
    ],
)
def test_tile_bookkeeping_is_exact_for_a_local_decoder(
    tile: tuple[int, int, int], overlap: tuple[int, int, int]
) -> None:
    z = latents(7, 5, 6, seed=5)
    expected = causal_nearest(z)
    result = decode_tiled(causal_nearest, z, POINTWISE, tile, overlap)
    assert max_difference(expected, result) < 1e-6


def pointwise(z: torch.Tensor) -> torch.Tensor:
    """A stand-in decoder with no reach at all: every tile decodes its pixels exactly."""
    video = z[:, :3].repeat_interleave(2, dim=2)[:, :, 1:]
    return video.repeat_interleave(4, dim=3).repeat_interleave(4, dim=4)


@pytest.mark.parametrize(
    ("tile", "overlap"),
    [
        ((2, 1, 1), (1, 0, 0)),
        ((3, 2, 3), (1, 1, 1)),
        ((4, 3, 2), (2, 2, 1)),
        ((8, 5, 6), (2, 1, 0)),  # 15 frames in tiles of 8: three tiles share frame 7
        ((15, 9, 9), (0, 0, 0)),
    ],
)
def test_blended_bookkeeping_is_exact_for_a_pointwise_decoder(
    tile: tuple[int, int, int], overlap: tuple[int, int, int]
) -> None:
    z = latents(15, 7, 8, seed=6)
    result = decode_tiled(pointwise, z, POINTWISE, tile, overlap, mode="blended")
    assert max_difference(pointwise(z), result) < 1e-6
    assert result.dtype == z.dtype


def test_blended_overlaps_are_ltx2s_within_the_exact_ones(vae: CausalVideoVAE) -> None:
    field = vae.receptive_field()
    # 64 pixels at spatial compression 4 is the tiny decoder's whole exact overlap (16);
    # 24 frames at temporal compression 2 are 12 latent frames, under the exact 19.
    assert default_overlap(field, "blended") == (12, 16, 16)
    assert default_overlap(field, "exact") == field.exact_overlap() == (19, 16, 16)


def test_blended_spatial_tiles_stay_within_the_stated_error(vae: CausalVideoVAE) -> None:
    z = latents(2, 8, 40, seed=7)
    with torch.no_grad():
        full = vae.decode(z)
        blended = vae.decode_tiled(z, (2, 8, 28), (0, 0, 16), mode="blended")
        exact = vae.decode_tiled(z, (2, 8, 28), (0, 0, 16))
    difference = (full - blended).abs()
    assert blended.shape == full.shape
    assert 0.01 < difference.max().item() < BLENDED_SPACE_MAX  # approximate, within bounds
    assert difference.mean().item() < BLENDED_SPACE_MEAN
    assert max_difference(full, exact) < EXACT_TOLERANCE  # the same tiles, exact mode


def test_blended_temporal_tiles_stay_within_the_stated_error(vae: CausalVideoVAE) -> None:
    z = latents(41, 2, 2, seed=8)
    with torch.no_grad():
        full = vae.decode(z)
        blended = vae.decode_tiled(z, (22, 2, 2), mode="blended")  # overlap (11, 1, 1)
    difference = (full - blended).abs()
    assert blended.shape == full.shape
    assert 0.05 < difference.max().item() < BLENDED_TIME_MAX
    assert difference.mean().item() < BLENDED_TIME_MEAN
    assert blended.abs().max() <= 1.0


def test_receptive_field_of_hand_built_decoders() -> None:
    single = receptive_field(nn.Sequential(CausalConv3d(1, 1, 3)))
    assert (single.context_frames, single.margin_height, single.margin_width) == (2, 1, 1)
    assert single.exact_overlap() == (2, 3, 3)
    shuffled = receptive_field(
        nn.Sequential(CausalConv3d(1, 8, (1, 3, 5)), DepthToSpace(temporal=2, spatial=2))
    )
    assert (shuffled.temporal_compression, shuffled.spatial_compression) == (2, 2)
    assert (shuffled.context_frames, shuffled.margin_height, shuffled.margin_width) == (1, 2, 4)


def test_tile_starts_cover_the_axis_with_at_least_the_overlap() -> None:
    assert tile_starts(3, 4, 2) == [0]
    for length, tile, overlap in [(10, 4, 2), (11, 4, 2), (37, 8, 3), (9, 5, 0)]:
        starts = tile_starts(length, tile, overlap)
        assert starts[0] == 0
        assert starts[-1] == length - tile
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert all(1 <= gap <= tile - overlap for gap in gaps), (length, starts)


def test_temporal_tiles_partition_the_kept_frames() -> None:
    assert list(temporal_tiles(4, 6, 2)) == [(0, 0, 4)]
    tiles = list(temporal_tiles(20, 6, 2))
    assert tiles[0] == (0, 0, 6)
    kept = [frame for _, keep, end in tiles for frame in range(keep, end)]
    assert kept == list(range(20))
    assert all(end - start <= 6 and keep - start == 2 for start, keep, end in tiles[1:])


def test_edge_ramp_trims_then_rises_linearly() -> None:
    assert edge_ramp(4, False, False, 1, 2).tolist() == [1.0, 1.0, 1.0, 1.0]
    assert edge_ramp(6, True, False, 2, 2).tolist() == [0.0, 0.0, 0.25, 0.75, 1.0, 1.0]
    assert edge_ramp(6, False, True, 2, 2).tolist() == [1.0, 1.0, 0.75, 0.25, 0.0, 0.0]


@pytest.mark.parametrize(
    ("tile", "overlap", "message"),
    [
        ((0, 4, 4), (0, 0, 0), "tile_latent_size t=0 must be at least 1"),
        ((4, 4, 4), (1, 4, 0), "overlap h=4 must be >= 0 and smaller than tile_latent_size h=4"),
        ((4, 4, 4), (1, 0, -1), "overlap w=-1 must be >= 0"),
        ((2, 4, 4), (0, 1, 1), "temporal tiles need at least 1 latent frame of causal context"),
    ],
)
def test_unusable_tiles_are_rejected(
    vae: CausalVideoVAE,
    tile: tuple[int, int, int],
    overlap: tuple[int, int, int],
    message: str,
) -> None:
    with pytest.raises(TileError, match=message):
        vae.decode_tiled(latents(3, 2, 2), tile, overlap)


def test_unknown_modes_and_budget_with_tiles_are_rejected(vae: CausalVideoVAE) -> None:
    z = latents(3, 2, 2)
    with pytest.raises(TileError, match="mode='fast' is not a tiling mode: use one of exact"):
        vae.decode_tiled(z, (2, 2, 2), (1, 1, 1), mode="fast")
    with pytest.raises(TileError, match="mode='fast' is not a tiling mode"):
        vae.decode_tiled(z, mode="fast")
    with pytest.raises(TileError, match="give tile_latent_size or memory_budget, not both"):
        vae.decode_tiled(z, (2, 2, 2), memory_budget=1 << 30)
    with pytest.raises(TileError, match="overlap to blend"):
        vae.decode_tiled(z, (2, 2, 2), (0, 1, 1), mode="blended")
