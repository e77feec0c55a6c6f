"""Tiled decoding: decode a latent video piece by piece so long or large videos fit in memory.

Two modes (``TILE_MODES``); the tile sizes come from the caller or from a memory budget
(:mod:`aiprod_core.vae.tile_plan`).

**Exact mode, space.** Tiles overlap by ``overlap`` latent positions and are blended with
linear ramps. A tile's pixels within the decoder's receptive-field *margin* of an inner tile
edge are wrong (the convolutions saw zero padding there instead of the neighbouring
latents), so each ramp first stays at weight 0 over that margin and then rises linearly
across the rest of the overlap. With an overlap of at least
:meth:`ReceptiveField.exact_overlap` only exact pixels get weight and the result equals
untiled decoding up to float rounding. With less, pixels that saw some padding get weight
too: the ramps still avoid hard seams, but the difference grows as the overlap shrinks.
Measured on the untrained tiny preset (max abs difference on the [-1, 1] scale): 0.007 at
three quarters of the exact spatial overlap, 0.06-0.13 at half, 0.23 at a quarter.

**Exact mode, time.** The decoder is causal, so a frame never depends on later latents.
Each temporal tile after the first starts ``overlap[0]`` latent frames early; those frames
are *causal context*: decoded and thrown away, they warm the tile up so its kept frames
match untiled decoding (exactly once the context covers the decoder's temporal receptive
field). At least one context frame is needed, because the first latent frame of any decode
yields one frame instead of ``t``. Measured on the untrained tiny preset (exact context 19
frames): 0.04 with 15 context frames, 0.3 with 10 and about 1.0 with 5.

**Blended mode** (LTX-2's tiling) overlaps by less than the receptive field and blends
with linear ramps over the *whole* overlap, with no zero-weight margin: in space as above,
and in time too, where each temporal tile decodes from a cold start and the decoded frames
two tiles share are blended instead of thrown away. It trades exactness for fewer decoded
pixels: exact overlaps grow with the decoder's depth (44 latent frames and 26 positions for
aiprod-19b, more than a 121-frame clip has), blended ones stay at 64 pixels and 24 frames.
Measured on the untrained tiny preset at its blended overlaps (16 positions, 12 frames; see
``tests/unit/test_vae_tiling.py``): 0.06-0.07 across spatial tiles (exact mode with the same
tiles: 1e-7), 0.42-0.50 across temporal tiles (exact mode with 12 context frames: 0.22), a
mean of 0.002 and 0.04. A trained decoder, whose influence fades faster, does better.

Tiling bounds the memory of the decoder's activations; the graph for autograd would still
grow with the video, so call it under ``torch.inference_mode()`` or ``torch.no_grad()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from aiprod_core.errors import AiprodError
from aiprod_core.vae.blocks import DepthToSpace
from aiprod_core.vae.causal_conv import CausalConv3d

Decode = Callable[[torch.Tensor], torch.Tensor]

TILE_MODES = ("exact", "blended")
"""``exact``: trimmed spatial ramps and causal context in time (the default); ``blended``:
ramps over the whole overlap in space and in time (approximate, fewer decoded pixels)."""


class TileError(AiprodError, ValueError):
    """Tile sizes or overlaps that cannot be used; the message names the argument."""


@dataclass(frozen=True)
class ReceptiveField:
    """How far a decoder's output reaches back into its input.

    ``context_frames``: latent frames of history a tile needs before its kept frames.
    ``margin_height`` / ``margin_width``: output pixels at an inner tile edge that are wrong.
    """

    context_frames: int
    margin_height: int
    margin_width: int
    temporal_compression: int
    spatial_compression: int

    def exact_overlap(self) -> tuple[int, int, int]:
        """The smallest (t, h, w) latent overlap for which tiled decoding is exact."""
        s = self.spatial_compression
        return (
            self.context_frames,
            -(-(2 * self.margin_height + 1) // s),
            -(-(2 * self.margin_width + 1) // s),
        )


def _first_at_least(predicate: Callable[[int], bool]) -> int:
    value = 0
    while not predicate(value):
        value += 1
    return value


def _spatial_margin(layers: list[tuple[str, int]]) -> int:
    """Output pixels next to an inner edge whose dependencies leave the tile."""

    def low(x: int) -> int:
        for kind, size in reversed(layers):
            x = x - size if kind == "conv" else x // size
        return x

    def high(x: int) -> int:
        for kind, size in reversed(layers):
            x = x + size if kind == "conv" else x // size
        return x

    left = _first_at_least(lambda x: low(x) >= 0)
    right = _first_at_least(lambda m: high(-1 - m) <= -1)
    return max(left, right)


def receptive_field(decoder: nn.Module) -> ReceptiveField:
    """Read the receptive field off a decoder whose layers run in registration order.

    Each :class:`CausalConv3d` (stride 1) reaches ``kernel_t - 1`` frames back and
    ``kernel // 2`` positions sideways; each :class:`DepthToSpace` multiplies the resolution.
    """
    time: list[tuple[str, int]] = []
    height: list[tuple[str, int]] = []
    width: list[tuple[str, int]] = []
    temporal = spatial = 1
    for module in decoder.modules():
        if isinstance(module, CausalConv3d):
            kt, kh, kw = module.kernel_size
            time.append(("conv", kt - 1))
            height.append(("conv", kh // 2))
            width.append(("conv", kw // 2))
        elif isinstance(module, DepthToSpace):
            time.append(("up", module.temporal))
            height.append(("up", module.spatial))
            width.append(("up", module.spatial))
            temporal *= module.temporal
            spatial *= module.spatial

    def earliest_input(frame: int) -> int:
        for kind, size in reversed(time):
            frame = frame - size if kind == "conv" else (frame + size - 1) // size
        return frame

    context = _first_at_least(lambda c: c >= 1 and earliest_input(temporal * c - temporal + 1) >= 0)
    return ReceptiveField(
        context_frames=context,
        margin_height=_spatial_margin(height),
        margin_width=_spatial_margin(width),
        temporal_compression=temporal,
        spatial_compression=spatial,
    )


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Evenly spread starts of ``tile``-long windows covering ``length``, overlapping
    by at least ``overlap``."""
    if length <= tile:
        return [0]
    gaps = -(-(length - tile) // (tile - overlap))
    return [i * (length - tile) // gaps for i in range(gaps + 1)]


def temporal_tiles(frames: int, tile: int, context: int) -> Iterator[tuple[int, int, int]]:
    """(decode_from, keep_from, end) latent frame indices of each temporal tile."""
    end = min(tile, frames)
    yield 0, 0, end
    while end < frames:
        keep = end
        end = min(keep - context + tile, frames)
        yield keep - context, keep, end


def edge_ramp(
    length: int, inner_start: bool, inner_end: bool, trim: int, ramp: int
) -> torch.Tensor:
    """Blend weights along one axis of a tile: 0 over ``trim`` pixels at an inner edge, then
    rising linearly over ``ramp`` pixels to 1. Outer edges (the video's borders) keep 1."""
    distance = torch.arange(length, dtype=torch.float32)
    weight = torch.ones(length)
    if inner_start:
        weight = weight * ((distance - trim + 0.5) / ramp).clamp(0, 1)
    if inner_end:
        weight = weight * ((length - 1 - distance - trim + 0.5) / ramp).clamp(0, 1)
    return weight


def check_mode(mode: str) -> None:
    """Raise TileError unless ``mode`` is one of :data:`TILE_MODES`."""
    if mode not in TILE_MODES:
        raise TileError(f"mode={mode!r} is not a tiling mode: use one of {', '.join(TILE_MODES)}")


def _check(
    tile: tuple[int, int, int], overlap: tuple[int, int, int], frames: int, mode: str
) -> None:
    check_mode(mode)
    for axis, size, over in zip("thw", tile, overlap, strict=True):
        if size < 1:
            raise TileError(f"tile_latent_size {axis}={size} must be at least 1")
        if not 0 <= over < size:
            raise TileError(
                f"overlap {axis}={over} must be >= 0 and smaller than tile_latent_size "
                f"{axis}={size}"
            )
    if frames > tile[0] and overlap[0] < 1:
        what = "causal context" if mode == "exact" else "overlap to blend"
        raise TileError(
            f"overlap t=0: temporal tiles need at least 1 latent frame of {what} "
            "(overlap t >= 1, so tile_latent_size t >= 2) when the latents have more frames "
            f"({frames}) than a tile ({tile[0]})"
        )


def decode_tiled(
    decode: Decode,
    latents: torch.Tensor,
    field: ReceptiveField,
    tile: tuple[int, int, int],
    overlap: tuple[int, int, int],
    mode: str = "exact",
) -> torch.Tensor:
    """Decode [B, C, T, h, w] ``latents`` tile by tile with ``decode`` in ``mode`` (see the
    module docs); a tile that covers the whole latent decodes it in one call."""
    frames, height, width = latents.shape[2:]
    _check(tile, overlap, frames, mode)
    if tile[0] >= frames and tile[1] >= height and tile[2] >= width:
        return decode(latents)
    if mode == "exact":
        return _exact_in_time(decode, latents, field, tile, overlap)
    return _blended_in_time(decode, latents, field, tile, overlap)


def _output(latents: torch.Tensor, field: ReceptiveField, channels: int) -> torch.Tensor:
    frames, height, width = latents.shape[2:]
    t, s = field.temporal_compression, field.spatial_compression
    shape = (latents.shape[0], channels, 1 + (frames - 1) * t, height * s, width * s)
    return latents.new_empty(shape)


def _exact_in_time(
    decode: Decode,
    latents: torch.Tensor,
    field: ReceptiveField,
    tile: tuple[int, int, int],
    overlap: tuple[int, int, int],
) -> torch.Tensor:
    """Each temporal tile after the first decodes ``overlap[0]`` frames of causal context
    and keeps only the frames after them."""
    t = field.temporal_compression
    out = latents.new_empty(0)
    for index, (start, keep, end) in enumerate(
        temporal_tiles(latents.shape[2], tile[0], overlap[0])
    ):
        video = _decode_spatial_tiles(decode, latents[:, :, start:end], field, tile, overlap, True)
        if index == 0:
            out = _output(latents, field, video.shape[1])
        skip = 0 if keep == 0 else t * (keep - start) - (t - 1)
        first = t * start + skip  # global index of the first kept frame
        out[:, :, first : first + video.shape[2] - skip] = video[:, :, skip:]
        del video
    return out


def _blended_in_time(
    decode: Decode,
    latents: torch.Tensor,
    field: ReceptiveField,
    tile: tuple[int, int, int],
    overlap: tuple[int, int, int],
) -> torch.Tensor:
    """Temporal tiles each decode from a cold start; the frames two tiles share are blended
    with linear ramps. A frame is written out once no later tile reaches it, so at most two
    temporal tiles of float32 frames are held at a time."""
    t, frames = field.temporal_compression, latents.shape[2]
    ramp = t * (overlap[0] - 1) + 1  # decoded frames two tiles share at the overlap asked for

    def weighted(start: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        end = min(start + tile[0], frames)
        video = _decode_spatial_tiles(decode, latents[:, :, start:end], field, tile, overlap, False)
        weight = edge_ramp(video.shape[2], start > 0, end < frames, 0, ramp).to(video.device)
        # A tile's first latent frame decodes to the video's frame t * start.
        return video.mul_(_frames(weight)), weight, t * start

    starts = tile_starts(frames, tile[0], overlap[0])
    pending, pending_weight, pending_from = weighted(starts[0])
    out = _output(latents, field, pending.shape[1])
    for start in starts[1:]:
        video, weight, first = weighted(start)
        done = first - pending_from
        out[:, :, pending_from:first] = pending[:, :, :done] / _frames(pending_weight[:done])
        video[:, :, : pending.shape[2] - done] += pending[:, :, done:]
        weight[: pending.shape[2] - done] += pending_weight[done:]
        pending, pending_weight, pending_from = video, weight, first
    out[:, :, pending_from:] = pending / _frames(pending_weight)
    return out


def _frames(weight: torch.Tensor) -> torch.Tensor:
    return weight.view(1, 1, -1, 1, 1)


def _decode_spatial_tiles(
    decode: Decode,
    latents: torch.Tensor,
    field: ReceptiveField,
    tile: tuple[int, int, int],
    overlap: tuple[int, int, int],
    trim_margin: bool,
) -> torch.Tensor:
    """One temporal tile's video in float32, its spatial tiles blended with ramps that skip
    the receptive-field margin (``trim_margin``, exact mode) or span the whole overlap."""
    height, width = latents.shape[3:]
    s = field.spatial_compression
    ramps = []
    for over, margin in ((overlap[1], field.margin_height), (overlap[2], field.margin_width)):
        pixels = over * s
        trim = max(0, min(margin, (pixels - 1) // 2)) if trim_margin else 0
        ramps.append((trim, max(pixels - 2 * trim, 1)))
    boxes = [
        (top, min(top + tile[1], height), left, min(left + tile[2], width))
        for top in tile_starts(height, tile[1], overlap[1])
        for left in tile_starts(width, tile[2], overlap[2])
    ]
    weights = torch.zeros(height * s, width * s, device=latents.device)
    total = weights
    for index, (top, bottom, left, right) in enumerate(boxes):
        video = decode(latents[:, :, :, top:bottom, left:right]).float()
        if index == 0:
            total = video.new_zeros(*video.shape[:3], height * s, width * s)
        rows = edge_ramp((bottom - top) * s, top > 0, bottom < height, *ramps[0])
        cols = edge_ramp((right - left) * s, left > 0, right < width, *ramps[1])
        weight = (rows[:, None] * cols[None, :]).to(latents.device)
        rows_px, cols_px = slice(top * s, bottom * s), slice(left * s, right * s)
        total[..., rows_px, cols_px] += video * weight
        weights[rows_px, cols_px] += weight
        del video
    return total.div_(weights)
