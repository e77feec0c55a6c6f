"""Latents of the same clips at two resolutions: what the x2 latent upsampler trains on.

Mode ``upsampler`` of ``aiprod-train`` reads two latent caches made from one manifest:
``data.cache`` at the clips' own size and ``data.low_res_cache`` at half their width and
height (``scripts/data/compute_latents.py --downscale 2``, which builds its records with
:func:`downscaled_record` and its ``cache.json`` with :func:`downscaled_meta`). Items pair
up by id (a manifest record's ``media``). :func:`paired_dataset` checks that every item has
its partner and that each low-resolution latent is ``[C, T, h/2, w/2]`` of its
``[C, T, h, w]`` full-resolution partner; :class:`PairedLatentDataset` serves the pairs::

    {"latents": [C, T, h, w] (the target), "low_res": [C, T, h/2, w/2] (the input)}

Both caches hold the VAE's normalised latents, so the upsampler learns in the space the
transformer generates in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from aiprod_core.errors import AiprodError
from aiprod_core.problems import shorten
from aiprod_core.vae import VideoGeometry, VideoShapeError
from aiprod_trainer.data.latent_cache import CacheMeta, LatentCache
from aiprod_trainer.data.manifest import ManifestRecord

UPSCALE = 2
"""How much :class:`aiprod_core.upsampler.LatentUpsampler` enlarges latent height and width."""
DOWNSCALE_SETTING = "downscale"
"""The ``cache.json`` setting that records a cache's clips as 1/N of their records' size."""
MATCHING_SETTINGS = ("weights", "vae")
"""Settings two caches of a pair must share: their latents come from one VAE."""
_NAMED = 3


class LatentPairError(AiprodError, ValueError):
    """Two caches do not pair up (missing items, wrong shapes); names both and the fix."""


def downscaled_record(
    record: ManifestRecord, factor: int, geometry: VideoGeometry | None = None
) -> ManifestRecord:
    """``record`` at ``1/factor`` of its width and height (same clip, frames and caption).

    ``load_clip`` with the result reads the clip at the smaller size. Raises
    :class:`LatentPairError` when the sizes do not divide by ``factor`` or, with
    ``geometry``, when the smaller clip does not fit the VAE.
    """
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    if record.width % factor or record.height % factor:
        raise LatentPairError(
            f"width={record.width} and height={record.height} must both divide by the "
            f"downscale factor {factor}"
        )
    smaller = record.model_copy(
        update={"width": record.width // factor, "height": record.height // factor}
    )
    if geometry is not None:
        try:
            geometry.validate_video_shape(smaller.frames, smaller.height, smaller.width)
        except VideoShapeError as exc:
            raise LatentPairError(
                f"at 1/{factor} size ({smaller.width}x{smaller.height}) the clip does not fit "
                f"the VAE: {exc}"
            ) from None
    return smaller


def downscaled_meta(meta: CacheMeta, factor: int) -> CacheMeta:
    """``meta`` of a cache whose clips are ``1/factor`` of their records' size (the
    ``downscale`` setting; none for ``factor`` 1, as in every full-size cache)."""
    settings = {k: v for k, v in meta.settings.items() if k != DOWNSCALE_SETTING}
    if factor != 1:
        settings[DOWNSCALE_SETTING] = factor
    return CacheMeta(meta.preset, meta.text_encoder, settings, meta.format_version)


class PairedLatentDataset(Dataset[dict[str, torch.Tensor]]):
    """Torch Dataset of ``{"latents", "low_res"}`` pairs, in the full cache's order.

    Build it with :func:`paired_dataset`, which checks the pairing first.
    """

    def __init__(self, cache: LatentCache, low_res: LatentCache) -> None:
        self.cache = cache
        self.low_res = low_res
        self._low_index = {entry.id: index for index, entry in enumerate(low_res.entries)}

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self.cache[index]
        low = self.low_res[self._low_index[item.id]]
        return {"latents": item.latents, "low_res": low.latents}

    def buckets(self) -> dict[str, list[int]]:
        """The full cache's buckets (a bucket's pairs share both latent shapes)."""
        return self.cache.buckets()


def paired_dataset(
    cache: LatentCache, low_res: LatentCache, names: tuple[str, str]
) -> PairedLatentDataset:
    """The pairs of ``cache`` (full resolution) and ``low_res``, after checking they pair.

    ``names`` are how the two are called in messages (``("data.cache",
    "data.low_res_cache")``). Raises :class:`LatentPairError`, one line naming both.
    """
    _check_settings(cache, low_res, names)
    _check_ids(cache, low_res, names)
    _check_shapes(cache, low_res, names)
    return PairedLatentDataset(cache, low_res)


def _check_settings(cache: LatentCache, low_res: LatentCache, names: tuple[str, str]) -> None:
    full_name, low_name = names
    keys: list[tuple[str, Any, Any]] = [("preset", cache.meta.preset, low_res.meta.preset)]
    keys += [
        (f"settings.{key}", cache.meta.settings.get(key), low_res.meta.settings.get(key))
        for key in MATCHING_SETTINGS
    ]
    differing = [
        f"{key} is {shorten(low)} here, {shorten(full)} in {full_name}"
        for key, full, low in keys
        if full != low
    ]
    if differing:
        raise LatentPairError(
            f"{low_name}: {low_res.folder} was made with another model than {full_name} "
            f"({cache.folder}): {'; '.join(differing)}; encode both with the same weights"
        )


def _check_ids(cache: LatentCache, low_res: LatentCache, names: tuple[str, str]) -> None:
    full_name, low_name = names
    full_ids = [entry.id for entry in cache.entries]
    low_ids = [entry.id for entry in low_res.entries]
    missing = _absent(full_ids, set(low_ids))
    extra = _absent(low_ids, set(full_ids))
    if not (missing or extra):
        return
    problems = []
    if missing:
        problems.append(f"lacks {len(missing)} item(s) of {full_name} ({_listed(missing)})")
    if extra:
        problems.append(f"has {len(extra)} item(s) {full_name} lacks ({_listed(extra)})")
    raise LatentPairError(
        f"{low_name}: {low_res.folder} {' and '.join(problems)}; both caches must hold the "
        f"same clips ({cache.folder}): encode one manifest twice, the second time with "
        "compute_latents.py --downscale 2"
    )


def _check_shapes(cache: LatentCache, low_res: LatentCache, names: tuple[str, str]) -> None:
    full_name, low_name = names
    low_shapes = {entry.id: entry.latent_shape for entry in low_res.entries}
    wrong: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []
    for entry in cache.entries:
        channels, frames, height, width = entry.latent_shape
        if height % UPSCALE or width % UPSCALE:
            raise LatentPairError(
                f"{full_name}: item {shorten(entry.id)} of {cache.folder} has latents "
                f"{_shape(entry.latent_shape)}; the x{UPSCALE} upsampler needs a latent "
                f"height and width that divide by {UPSCALE}"
            )
        expected = (channels, frames, height // UPSCALE, width // UPSCALE)
        if low_shapes[entry.id] != expected:
            wrong.append((entry.id, low_shapes[entry.id], entry.latent_shape))
    if wrong:
        item, found, full = wrong[0]
        more = f" (and {len(wrong) - 1} more item(s))" if len(wrong) > 1 else ""
        expected = (full[0], full[1], full[2] // UPSCALE, full[3] // UPSCALE)
        raise LatentPairError(
            f"{low_name}: item {shorten(item)} has latents {_shape(found)}{more}; expected "
            f"{_shape(expected)}: {full_name}'s {_shape(full)} at half height and width with "
            f"the same channels and frames (make it with compute_latents.py --downscale "
            f"{UPSCALE})"
        )


def _absent(ids: Sequence[str], present: set[str]) -> list[str]:
    return [item for item in ids if item not in present]


def _listed(ids: Sequence[str]) -> str:
    named = ", ".join(shorten(item) for item in ids[:_NAMED])
    return named + (", ..." if len(ids) > _NAMED else "")


def _shape(shape: Sequence[Any]) -> str:
    return "[" + ", ".join(str(size) for size in shape) + "]"
