"""Pairs of latent caches for the upsampler: smaller records, the pairing checks, the
dataset of pairs and the upsampler's objective."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from aiprod_core.models import get_preset
from aiprod_core.upsampler import LatentUpsampler, nearest_upsample
from aiprod_core.vae import VideoGeometry
from aiprod_trainer import ManifestRecord
from aiprod_trainer.data.latent_cache import CacheMeta, LatentCache, LatentCacheWriter
from aiprod_trainer.data.latent_pairs import (
    DOWNSCALE_SETTING,
    LatentPairError,
    PairedLatentDataset,
    downscaled_meta,
    downscaled_record,
    paired_dataset,
)
from aiprod_trainer.training.batches import collate, item_generator
from aiprod_trainer.training.objectives import UpsamplerObjective

META = CacheMeta("tiny", "builtin", {"weights": "random-init seed 0", "vae": {"c": 8}})
NAMES = ("data.cache", "data.low_res_cache")
GEOMETRY = VideoGeometry(4, 2)
CPU = torch.device("cpu")


def record(width: int = 16, height: int = 16, frames: int = 5) -> ManifestRecord:
    return ManifestRecord(
        media="clips/a.mp4", caption="a clip", width=width, height=height, frames=frames, fps=8.0
    )


def write_cache(
    folder: Path,
    shapes: Sequence[tuple[str, tuple[int, int, int, int]]],
    meta: CacheMeta = META,
) -> LatentCache:
    """A cache of ``(id, latent shape)`` items with seeded latents."""
    with LatentCacheWriter(folder, meta) as writer:
        for index, (item_id, shape) in enumerate(shapes):
            latents = torch.randn(shape, generator=torch.Generator().manual_seed(index))
            text, mask = torch.zeros(4, 3), torch.ones(4, dtype=torch.bool)
            clip = record(width=4 * shape[3], height=4 * shape[2], frames=2 * shape[1] - 1)
            writer.add(item_id, latents, text, mask, clip)
    return LatentCache(folder)


def pair(
    tmp_path: Path,
    full: Sequence[tuple[str, tuple[int, int, int, int]]],
    low: Sequence[tuple[str, tuple[int, int, int, int]]],
    low_meta: CacheMeta = META,
) -> PairedLatentDataset:
    return paired_dataset(
        write_cache(tmp_path / "full", full),
        write_cache(tmp_path / "low", low, downscaled_meta(low_meta, 2)),
        NAMES,
    )


def pair_error(tmp_path: Path, *args: Any) -> str:
    with pytest.raises(LatentPairError) as error:
        pair(tmp_path, *args)
    return str(error.value)


def test_downscaled_record_halves_width_and_height_only() -> None:
    smaller = downscaled_record(record(width=32, height=16), 2, GEOMETRY)
    assert (smaller.width, smaller.height, smaller.frames) == (16, 8, 5)
    assert (smaller.media, smaller.caption, smaller.fps) == ("clips/a.mp4", "a clip", 8.0)
    assert downscaled_record(record(), 1) == record()


@pytest.mark.fault("videos")
def test_downscaled_record_refuses_sizes_that_do_not_divide_or_fit() -> None:
    with pytest.raises(LatentPairError) as error:
        downscaled_record(record(width=20), 8)
    assert str(error.value) == ("width=20 and height=16 must both divide by the downscale factor 8")
    with pytest.raises(LatentPairError) as error:
        downscaled_record(record(width=12), 2, GEOMETRY)
    assert str(error.value).startswith("at 1/2 size (6x8) the clip does not fit the VAE: ")
    assert "width=6 is not a positive multiple of spatial_compression=4" in str(error.value)


def test_downscaled_meta_records_the_factor() -> None:
    half = downscaled_meta(META, 2)
    assert half.settings == {**META.settings, DOWNSCALE_SETTING: 2}
    assert downscaled_meta(half, 1) == META
    assert META.differences(half) == ["settings.downscale: cache has None, expected 2"]


def test_pairs_follow_the_full_caches_order_and_buckets(tmp_path: Path) -> None:
    full = [("b", (8, 3, 4, 4)), ("a", (8, 3, 4, 8)), ("c", (8, 3, 4, 4))]
    low = [("a", (8, 3, 2, 4)), ("c", (8, 3, 2, 2)), ("b", (8, 3, 2, 2))]
    dataset = pair(tmp_path, full, low)
    assert len(dataset) == 3
    assert dataset.buckets() == {"16x16x5": [0, 2], "32x16x5": [1]}
    low_cache = LatentCache(tmp_path / "low")
    for index, (item_id, shape) in enumerate(full):
        item = dataset[index]
        assert item["latents"].shape == shape
        assert torch.equal(item["latents"], dataset.cache[index].latents)
        partner = next(entry for entry in low_cache if entry.id == item_id)
        assert torch.equal(item["low_res"], partner.latents)


@pytest.mark.fault("files")
def test_missing_and_extra_items_are_named(tmp_path: Path) -> None:
    full = [(f"clip-{i}", (8, 3, 4, 4)) for i in range(6)]
    low = [("clip-0", (8, 3, 2, 2)), ("stray", (8, 3, 2, 2))]
    assert pair_error(tmp_path, full, low) == (
        f"data.low_res_cache: {tmp_path / 'low'} lacks 5 item(s) of data.cache ('clip-1', "
        "'clip-2', 'clip-3', ...) and has 1 item(s) data.cache lacks ('stray'); both caches "
        f"must hold the same clips ({tmp_path / 'full'}): encode one manifest twice, the "
        "second time with compute_latents.py --downscale 2"
    )


@pytest.mark.fault("files")
@pytest.mark.parametrize(
    ("low_shape", "expected"),
    [
        ((8, 3, 4, 4), "[8, 3, 4, 4]"),  # full size: the --downscale 2 run was forgotten
        ((8, 3, 1, 1), "[8, 3, 1, 1]"),  # a quarter
        ((8, 2, 2, 2), "[8, 2, 2, 2]"),  # other frames
        ((4, 3, 2, 2), "[4, 3, 2, 2]"),  # other channels
    ],
)
def test_low_res_latents_must_be_half_the_full_ones(
    tmp_path: Path, low_shape: tuple[int, int, int, int], expected: str
) -> None:
    full = [("a", (8, 3, 4, 4)), ("b", (8, 3, 4, 4))]
    low = [("a", low_shape), ("b", low_shape)]
    assert pair_error(tmp_path, full, low) == (
        f"data.low_res_cache: item 'a' has latents {expected} (and 1 more item(s)); expected "
        "[8, 3, 2, 2]: data.cache's [8, 3, 4, 4] at half height and width with the same "
        "channels and frames (make it with compute_latents.py --downscale 2)"
    )


@pytest.mark.fault("files")
def test_odd_full_size_latents_cannot_be_halved(tmp_path: Path) -> None:
    message = pair_error(tmp_path, [("a", (8, 3, 3, 4))], [("a", (8, 3, 1, 2))])
    assert message == (
        f"data.cache: item 'a' of {tmp_path / 'full'} has latents [8, 3, 3, 4]; the x2 "
        "upsampler needs a latent height and width that divide by 2"
    )


@pytest.mark.fault("files")
def test_caches_of_other_weights_do_not_pair(tmp_path: Path) -> None:
    other = CacheMeta("tiny", "builtin", {**META.settings, "weights": "random-init seed 1"})
    message = pair_error(tmp_path, [("a", (8, 3, 4, 4))], [("a", (8, 3, 2, 2))], other)
    assert message == (
        f"data.low_res_cache: {tmp_path / 'low'} was made with another model than data.cache "
        f"({tmp_path / 'full'}): settings.weights is 'random-init seed 1' here, "
        "'random-init seed 0' in data.cache; encode both with the same weights"
    )


def test_upsampler_objective_is_the_mse_against_the_full_latents() -> None:
    torch.manual_seed(0)
    upsampler = LatentUpsampler(get_preset("tiny").upsampler)
    low = torch.randn(2, 8, 3, 2, 2)
    full = nearest_upsample(low) + 0.5 * torch.randn(2, 8, 3, 4, 4)
    batch = collate([{"latents": full[i], "low_res": low[i]} for i in range(2)])
    generators = [item_generator(0, 0, 0, slot) for slot in range(2)]
    objective = UpsamplerObjective()
    assert objective.component == "upsampler"
    output = objective.loss(upsampler, batch, generators, CPU)
    with torch.no_grad():
        expected = F.mse_loss(upsampler(low), full)
    torch.testing.assert_close(output.loss.detach(), expected)
    assert output.parts["nearest_mse"] == pytest.approx(
        float(F.mse_loss(nearest_upsample(low), full))
    )
    output.loss.backward()
    assert all(p.grad is not None for p in upsampler.parameters())
    other = [item_generator(5, 1, 9, slot) for slot in range(2)]
    again = objective.loss(upsampler, batch, other, CPU, training=False)
    assert torch.equal(again.loss.detach(), output.loss.detach())  # nothing random
