"""Choose decode tiles from a memory budget.

    plan = plan_tiles(get_preset("aiprod-19b").vae, (16, 24, 40), 16 * GiB, 2, "blended")
    plan.tile, plan.overlap          # latent (t, h, w) units, ready for decode_tiled
    plan.peak_bytes <= 16 * GiB      # one tile's decoder activations + the output buffers

Along each axis a tile size ``n`` with overlap ``o`` splits a length ``L`` into the evenly
spread windows of :func:`~aiprod_core.vae.tiling.tile_starts` (exact mode's time axis: into
:func:`~aiprod_core.vae.tiling.temporal_tiles`). For each number of tiles only the smallest
size giving it is worth trying: it needs the least memory and decodes the fewest pixels.
:func:`plan_tiles` tries every combination of those sizes, keeps the ones whose peak fits
the budget, and returns the one that decodes the fewest pixels (then: fewer tiles, then the
largest tile). A tile that covers the whole latent is a plain decode with no extra buffers.

The peak of a tiled decode is :func:`~aiprod_core.vae.decode_memory.decode_peak_bytes` of
one tile plus :func:`assembly_bytes`: the output video and the float32 buffers that blend
the tiles (a temporal tile's frames, twice in blended mode). The model's weights and the
latents are not counted: they are there before the decode starts.

**Overlaps.** Exact mode overlaps by :meth:`ReceptiveField.exact_overlap`, which grows with
the decoder's depth: (19, 16, 16) latents for tiny, (44, 26, 26) for aiprod-19b, more than
the 16 x 24 latent frames of a 121 x 768 x 1280 clip, so at that size exact tiles cannot
split time or height at all. Blended mode overlaps like LTX-2's default tiling, 64 pixels in
space and 24 frames in time (:data:`BLENDED_OVERLAP_PIXELS`, :data:`BLENDED_OVERLAP_FRAMES`),
converted to latents and never more than the exact overlap.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from aiprod_core.models.configs import VAEConfig
from aiprod_core.vae.decode_memory import decode_peak_bytes
from aiprod_core.vae.decoder import Decoder
from aiprod_core.vae.tiling import (
    ReceptiveField,
    TileError,
    check_mode,
    receptive_field,
    temporal_tiles,
    tile_starts,
)

GIB = 1 << 30

BLENDED_OVERLAP_PIXELS = 64
"""Blended mode's spatial overlap in decoded pixels (LTX-2's default tiling)."""

BLENDED_OVERLAP_FRAMES = 24
"""Blended mode's temporal overlap in decoded frames (LTX-2's default tiling)."""

FLOAT32_BYTES = 4


@functools.lru_cache(maxsize=8)
def receptive_field_of(config: VAEConfig) -> ReceptiveField:
    """The receptive field of ``config``'s decoder (built on the meta device: no memory)."""
    with torch.device("meta"):
        decoder = Decoder(config)
    return receptive_field(decoder)


def default_overlap(field: ReceptiveField, mode: str) -> tuple[int, int, int]:
    """The (t, h, w) latent overlap ``mode`` uses unless told otherwise."""
    check_mode(mode)
    exact = field.exact_overlap()
    if mode == "exact":
        return exact
    t, s = field.temporal_compression, field.spatial_compression
    spatial = -(-BLENDED_OVERLAP_PIXELS // s)
    return (
        min(exact[0], -(-BLENDED_OVERLAP_FRAMES // t)),
        min(exact[1], spatial),
        min(exact[2], spatial),
    )


def assembly_bytes(
    config: VAEConfig,
    latent_thw: tuple[int, int, int],
    tile_frames: int,
    dtype_bytes: int,
    mode: str,
) -> int:
    """Bytes a tiled decode holds besides the decoder's activations: the output video in the
    latents' dtype, the float32 blend of one temporal tile (two in blended mode) and its
    spatial weights."""
    frames, height, width = latent_thw
    t, s = config.temporal_compression, config.spatial_compression
    plane = height * s * width * s
    tile_video = config.in_channels * (1 + (min(tile_frames, frames) - 1) * t) * plane
    blends = 2 if mode == "blended" else 1
    output = config.in_channels * (1 + (frames - 1) * t) * plane
    return output * dtype_bytes + (blends * tile_video + plane) * FLOAT32_BYTES


@dataclass(frozen=True)
class TilePlan:
    """Tiles for one latent video: sizes and overlaps in latent (t, h, w) units, and what
    they cost. An axis with one tile has overlap 0."""

    mode: str
    latent_shape: tuple[int, int, int]
    tile: tuple[int, int, int]
    overlap: tuple[int, int, int]
    tiles: tuple[int, int, int]
    tile_peak_bytes: int
    assembly_bytes: int
    decoded_pixels: int
    video_pixels: int

    @property
    def peak_bytes(self) -> int:
        """Estimated peak of the whole tiled decode (weights and latents not included)."""
        return self.tile_peak_bytes + self.assembly_bytes

    @property
    def untiled(self) -> bool:
        """True when one tile covers the latent: a plain decode."""
        return self.tiles == (1, 1, 1)

    @property
    def overhead(self) -> float:
        """Decoded pixels beyond the video's own (overlaps, causal context), as a fraction
        of the video's pixels: the extra decoding work the tiles cost."""
        return self.decoded_pixels / self.video_pixels - 1


@dataclass(frozen=True)
class _Option:
    """One way to split an axis: tile ``size``, ``count`` tiles, ``decoded`` frames or pixels
    along the axis summed over the tiles."""

    size: int
    count: int
    decoded: int


def _options(length: int, overlap: int, scale: int, *, time: bool, exact: bool) -> list[_Option]:
    """The smallest tile size for each tile count along one axis, fewest tiles first."""

    def decoded(span: int) -> int:
        return 1 + (span - 1) * scale if time else span * scale

    smallest = length if time and overlap < 1 else min(overlap, length - 1)
    best: dict[int, _Option] = {}
    for size in range(length, smallest, -1):
        if size == length:
            spans = [length]
        elif time and exact:
            spans = [end - start for start, _, end in temporal_tiles(length, size, overlap)]
        else:
            spans = [size] * len(tile_starts(length, size, overlap))
        best[len(spans)] = _Option(size, len(spans), sum(decoded(span) for span in spans))
    return sorted(best.values(), key=lambda option: option.count)


class _Planner:
    """The candidate tiles of one latent shape in one mode, and what each costs."""

    def __init__(
        self,
        config: VAEConfig,
        latent_shape_thw: tuple[int, int, int],
        dtype_bytes: int,
        mode: str,
        overlap: tuple[int, int, int] | None,
    ) -> None:
        check_mode(mode)
        if min(latent_shape_thw) < 1:
            raise TileError(f"latent shape {latent_shape_thw}: every size must be at least 1")
        self.overlap = (
            default_overlap(receptive_field_of(config), mode) if overlap is None else overlap
        )
        if min(self.overlap) < 0:
            raise TileError(f"overlap {self.overlap} must be >= 0 along every axis")
        self.config = config
        self.shape = latent_shape_thw
        self.dtype_bytes = dtype_bytes
        self.mode = mode
        frames, height, width = latent_shape_thw
        t, s = config.temporal_compression, config.spatial_compression
        self.time = _options(frames, self.overlap[0], t, time=True, exact=mode == "exact")
        self.rows = _options(height, self.overlap[1], s, time=False, exact=False)
        self.cols = _options(width, self.overlap[2], s, time=False, exact=False)
        self.video_pixels = (1 + (frames - 1) * t) * height * s * width * s

    def plan(self, a: _Option, b: _Option, c: _Option) -> TilePlan:
        counts = (a.count, b.count, c.count)
        tile = (a.size, b.size, c.size)
        blends = self.mode if a.count > 1 else "exact"  # one temporal tile: one blend buffer
        extra = 0
        if counts != (1, 1, 1):
            extra = assembly_bytes(self.config, self.shape, a.size, self.dtype_bytes, blends)
        return TilePlan(
            mode=self.mode,
            latent_shape=self.shape,
            tile=tile,
            overlap=(
                self.overlap[0] if a.count > 1 else 0,
                self.overlap[1] if b.count > 1 else 0,
                self.overlap[2] if c.count > 1 else 0,
            ),
            tiles=counts,
            tile_peak_bytes=decode_peak_bytes(self.config, tile, self.dtype_bytes),
            assembly_bytes=extra,
            decoded_pixels=a.decoded * b.decoded * c.decoded,
            video_pixels=self.video_pixels,
        )

    def smallest(self) -> TilePlan:
        """The plan with the smallest tile along every axis: the least memory there is."""
        return self.plan(self.time[-1], self.rows[-1], self.cols[-1])

    def best(self, budget_bytes: int) -> TilePlan | None:
        """The plan that fits ``budget_bytes`` with the fewest decoded pixels, if any."""
        best: TilePlan | None = None
        for a in self.time:
            for b in self.rows:
                # The peak grows with the tile, so the first column split that fits has the
                # fewest tiles of those that fit for this (a, b).
                fitting = (self.plan(a, b, c) for c in self.cols)
                plan = next((p for p in fitting if p.peak_bytes <= budget_bytes), None)
                if plan is not None and (best is None or _rank(plan) < _rank(best)):
                    best = plan
        return best


def _rank(plan: TilePlan) -> tuple[int, int, int]:
    t, h, w = plan.tile
    return plan.decoded_pixels, plan.tiles[0] * plan.tiles[1] * plan.tiles[2], -(t * h * w)


def _readable(size: int) -> str:
    if size >= GIB:
        return f"{size / GIB:.2f} GiB"
    return f"{size / (1 << 20):.1f} MiB"


def minimum_budget(
    config: VAEConfig,
    latent_shape_thw: tuple[int, int, int],
    dtype_bytes: int,
    mode: str = "exact",
    overlap: tuple[int, int, int] | None = None,
) -> int:
    """The smallest memory budget :func:`plan_tiles` accepts for this latent and mode."""
    return _Planner(config, latent_shape_thw, dtype_bytes, mode, overlap).smallest().peak_bytes


def plan_tiles(
    config: VAEConfig,
    latent_shape_thw: tuple[int, int, int],
    budget_bytes: int,
    dtype_bytes: int,
    mode: str = "exact",
    overlap: tuple[int, int, int] | None = None,
) -> TilePlan:
    """The tiles that decode a ``(T, h, w)`` latent within ``budget_bytes`` with the fewest
    decoded pixels (see the module docs); a TileError names the smallest budget that works.

    ``overlap`` (latent units) defaults to :func:`default_overlap` of ``mode``.
    """
    planner = _Planner(config, latent_shape_thw, dtype_bytes, mode, overlap)
    if budget_bytes < 1:
        raise TileError(f"memory_budget={budget_bytes} must be a positive number of bytes")
    plan = planner.best(budget_bytes)
    if plan is not None:
        return plan
    smallest = planner.smallest()
    message = (
        f"memory_budget={budget_bytes} ({_readable(budget_bytes)}) is too small to decode latents "
        f"{latent_shape_thw} in {mode} mode: its smallest tile {smallest.tile} needs "
        f"{smallest.peak_bytes} bytes ({_readable(smallest.peak_bytes)}: "
        f"{_readable(smallest.tile_peak_bytes)} of decoder activations and "
        f"{_readable(smallest.assembly_bytes)} for the output and blend buffers); give "
        f"memory_budget >= {smallest.peak_bytes}"
    )
    if mode == "exact" and overlap is None:
        blended = minimum_budget(config, latent_shape_thw, dtype_bytes, "blended")
        if blended < smallest.peak_bytes:
            message += (
                f", or mode='blended' (approximate overlaps), which needs >= {blended} "
                f"({_readable(blended)})"
            )
    raise TileError(message)
