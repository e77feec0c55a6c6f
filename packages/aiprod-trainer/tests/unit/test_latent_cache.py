"""The latent cache: round trip, crash leftovers, resume, errors, dataset and bucket sampler."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
from torch.utils.data import DataLoader

from aiprod_trainer import ManifestRecord
from aiprod_trainer.data import latent_cache as module
from aiprod_trainer.data.bucket_sampler import BucketBatchSampler
from aiprod_trainer.data.latent_cache import (
    INDEX_FILE,
    META_FILE,
    CacheMeta,
    LatentCache,
    LatentCacheError,
    LatentCacheWarning,
    LatentCacheWriter,
    LatentDataset,
    shard_name,
)

META = CacheMeta("tiny", "builtin", {"latents": "mean", "vae": {"spatial": (4, 4)}})


def make_item(seed: int, frames: int = 3, size: int = 4) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    mask = torch.zeros(6, dtype=torch.bool)
    mask[: 2 + seed % 4] = True
    return {
        "latents": torch.randn(8, frames, size, size, generator=generator),
        "text": torch.randn(6, 5, generator=generator),
        "mask": mask,
    }


@pytest.fixture
def record_for(make_record: Callable[..., ManifestRecord]) -> Callable[..., ManifestRecord]:
    def build(name: str, size: int = 16, frames: int = 5) -> ManifestRecord:
        return make_record(
            media=f"clips/{name}.mp4",
            caption=f"caption {name}",
            width=size,
            height=size,
            frames=frames,
        )

    return build


def fill(
    folder: Path,
    record_for: Callable[..., ManifestRecord],
    names: list[str],
    shard_size: int = 2,
) -> dict[str, dict[str, torch.Tensor]]:
    """Write ``names`` as items (``big*`` in a larger bucket) and return their tensors."""
    items = {}
    with LatentCacheWriter(folder, META, shard_size=shard_size) as writer:
        for seed, name in enumerate(names):
            big = name.startswith("big")
            items[name] = make_item(seed, size=8 if big else 4)
            writer.add(name, **items[name], record=record_for(name, size=32 if big else 16))
    return items


def test_round_trip_is_bit_exact(tmp_path: Path, record_for: Callable[..., ManifestRecord]) -> None:
    items = fill(tmp_path, record_for, ["a", "big1", "b"])

    assert sorted(p.name for p in tmp_path.glob("shard-*")) == [shard_name(0), shard_name(1)]
    assert json.loads((tmp_path / META_FILE).read_text()) == {
        "format_version": 1,
        "preset": "tiny",
        "text_encoder": "builtin",
        "settings": {"latents": "mean", "vae": {"spatial": [4, 4]}},
    }
    first = json.loads((tmp_path / INDEX_FILE).read_text().splitlines()[0])
    assert first == {
        "id": "a",
        "shard": 0,
        "caption": "caption a",
        "media": "clips/a.mp4",
        "bucket": "16x16x5",
        "latent_shape": [8, 3, 4, 4],
        "fps": 24.0,
    }
    cache = LatentCache(tmp_path)
    assert cache.meta == META
    assert len(cache) == 3
    for index, name in enumerate(["a", "big1", "b"]):
        item = cache[index]
        assert item.id == name
        assert item.caption == f"caption {name}"
        assert item.media == f"clips/{name}.mp4"
        for key in ("latents", "text", "mask"):
            assert getattr(item, key).dtype == items[name][key].dtype
            assert torch.equal(getattr(item, key), items[name][key])
    assert cache.buckets() == {"16x16x5": [0, 2], "32x32x5": [1]}


def test_resumed_writer_skips_done_items_and_continues_numbering(
    tmp_path: Path, record_for: Callable[..., ManifestRecord]
) -> None:
    fill(tmp_path, record_for, ["a", "b", "c"])
    writer = LatentCacheWriter(tmp_path, META, shard_size=2)
    assert writer.done_ids() == {"a", "b", "c"}
    assert writer.next_shard == 2
    with pytest.raises(ValueError, match="'a' is already in the cache"):
        writer.add("a", **make_item(0), record=record_for("a"))
    writer.add("d", **make_item(3), record=record_for("d"))
    with pytest.raises(ValueError, match="'d' is already in the cache"):
        writer.add("d", **make_item(3), record=record_for("d"))
    writer.flush()
    writer.flush()  # nothing buffered: no empty shard
    assert writer.shards_written == 1
    assert [e.shard for e in LatentCache(tmp_path).entries] == [0, 0, 1, 2]


def test_writer_refuses_a_cache_made_with_other_settings(
    tmp_path: Path, record_for: Callable[..., ManifestRecord]
) -> None:
    fill(tmp_path, record_for, ["a"])
    other = CacheMeta("small", "builtin", {"latents": "sample", "vae": {"spatial": [4, 4]}})
    with pytest.raises(LatentCacheError) as error:
        LatentCacheWriter(tmp_path, other)
    message = str(error.value)
    assert str(tmp_path / META_FILE) in message
    assert "preset: cache has 'tiny', expected 'small'" in message
    assert "settings.latents: cache has 'mean', expected 'sample'" in message


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        ({"latents": torch.zeros(8, 3, 4)}, "latents of 'x': expected float"),
        ({"latents": torch.zeros(8, 3, 4, 4, dtype=torch.long)}, "latents of 'x'"),
        ({"text": torch.zeros(6)}, "text of 'x': expected float"),
        ({"mask": torch.ones(5, dtype=torch.bool)}, r"mask of 'x': expected shape \[6\]"),
    ],
)
def test_add_checks_tensor_shapes(
    tmp_path: Path,
    record_for: Callable[..., ManifestRecord],
    tensors: dict[str, torch.Tensor],
    message: str,
) -> None:
    writer = LatentCacheWriter(tmp_path, META)
    with pytest.raises(ValueError, match=message):
        writer.add("x", **{**make_item(0), **tensors}, record=record_for("x"))


def test_bad_writer_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shard_size must be >= 1"):
        LatentCacheWriter(tmp_path, META, shard_size=0)


def test_an_exception_drops_the_unflushed_items(
    tmp_path: Path, record_for: Callable[..., ManifestRecord]
) -> None:
    def killed_after_three_items() -> None:
        with LatentCacheWriter(tmp_path, META, shard_size=2) as writer:
            for seed, name in enumerate("abc"):
                writer.add(name, **make_item(seed), record=record_for(name))
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        killed_after_three_items()
    assert LatentCacheWriter(tmp_path, META).done_ids() == {"a", "b"}
    assert not (tmp_path / shard_name(1)).exists()


def test_torn_last_index_line_is_ignored_and_dropped_on_resume(
    tmp_path: Path, record_for: Callable[..., ManifestRecord]
) -> None:
    fill(tmp_path, record_for, ["a", "b", "c"])
    index = tmp_path / INDEX_FILE
    lines = index.read_text().splitlines(keepends=True)
    index.write_text(lines[0] + lines[1] + lines[2][:25])  # the append of "c" was cut short

    with pytest.warns(LatentCacheWarning, match="torn last line"):
        cache = LatentCache(tmp_path)
    assert [entry.id for entry in cache.entries] == ["a", "b"]

    with pytest.warns(LatentCacheWarning):
        writer = LatentCacheWriter(tmp_path, META, shard_size=2)
    assert index.read_text() == lines[0] + lines[1]  # the fragment is gone
    assert writer.done_ids() == {"a", "b"}
    assert writer.next_shard == 1
    writer.add("c", **make_item(2), record=record_for("c"))
    writer.flush()
    assert [entry.id for entry in LatentCache(tmp_path).entries] == ["a", "b", "c"]


def test_orphan_shard_is_ignored_and_overwritten(
    tmp_path: Path, record_for: Callable[..., ManifestRecord]
) -> None:
    items = fill(tmp_path, record_for, ["a", "b"])
    orphan = tmp_path / shard_name(1)
    orphan.write_bytes(b"a shard whose index lines were never appended")

    cache = LatentCache(tmp_path)
    assert len(cache) == 2
    assert torch.equal(cache[1].latents, items["b"]["latents"])

    with LatentCacheWriter(tmp_path, META) as writer:
        writer.add("c", **make_item(7), record=record_for("c"))
    assert torch.equal(LatentCache(tmp_path)[2].latents, make_item(7)["latents"])


def test_failed_index_append_leaves_the_index_whole(
    tmp_path: Path, record_for: Callable[..., ManifestRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(tmp_path, record_for, ["a"])
    before = (tmp_path / INDEX_FILE).read_bytes()
    writer = LatentCacheWriter(tmp_path, META)
    writer.add("b", **make_item(1), record=record_for("b"))

    index_inode = (tmp_path / INDEX_FILE).stat().st_ino
    real_fsync = module.os.fsync

    def no_space_for_the_index(descriptor: int) -> None:
        if module.os.fstat(descriptor).st_ino == index_inode:
            raise OSError(28, "No space left on device")
        real_fsync(descriptor)

    monkeypatch.setattr(module.os, "fsync", no_space_for_the_index)
    with pytest.raises(OSError, match="No space"):
        writer.flush()
    assert (tmp_path / INDEX_FILE).read_bytes() == before
    assert (tmp_path / shard_name(1)).is_file()  # written, but an orphan until the retry

    monkeypatch.undo()
    writer.flush()  # the retry rewrites the same shard and appends once
    assert [entry.id for entry in LatentCache(tmp_path).entries] == ["a", "b"]


def test_corrupt_shard_names_the_file(
    tmp_path: Path, record_for: Callable[..., ManifestRecord]
) -> None:
    fill(tmp_path, record_for, ["a", "b", "c"])
    shard = tmp_path / shard_name(0)
    shard.write_bytes(shard.read_bytes()[:-10])  # truncated
    cache = LatentCache(tmp_path)
    assert torch.equal(cache[2].latents, make_item(2)["latents"])  # shard 1 is fine
    with pytest.raises(LatentCacheError, match="not a readable safetensors shard") as error:
        cache[0]
    assert str(shard) in str(error.value)


def test_missing_shard_names_the_file(
    tmp_path: Path, record_for: Callable[..., ManifestRecord]
) -> None:
    fill(tmp_path, record_for, ["a"])
    (tmp_path / shard_name(0)).unlink()
    with pytest.raises(LatentCacheError, match=r"shard-00000\.safetensors: shard missing"):
        LatentCache(tmp_path)[0]


def test_shard_lacking_a_listed_tensor(
    tmp_path: Path, record_for: Callable[..., ManifestRecord]
) -> None:
    fill(tmp_path, record_for, ["a"])
    safetensors.torch.save_file({"other.latents": torch.zeros(1)}, tmp_path / shard_name(0))
    with pytest.raises(LatentCacheError, match=r"lacks tensor 'a\.latents'"):
        LatentCache(tmp_path)[0]


def test_shape_other_than_the_index_says(
    tmp_path: Path, record_for: Callable[..., ManifestRecord]
) -> None:
    fill(tmp_path, record_for, ["a"])
    index = tmp_path / INDEX_FILE
    index.write_text(index.read_text().replace("[8, 3, 4, 4]", "[8, 3, 2, 2]"))
    with pytest.raises(LatentCacheError, match=r"has shape \(8, 3, 4, 4\); index.jsonl says"):
        LatentCache(tmp_path)[0]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{oops", "expected a JSON object with id"),
        ('{"id": "a"}', "expected a JSON object with id"),
        ("[1, 2]", "expected a JSON object with id"),
        (
            (
                '{"id": "a", "shard": 0, "caption": "c", "media": "m", "bucket": "big", '
                '"latent_shape": [1]}'
            ),
            "bucket: expected a label WIDTHxHEIGHTxFRAMES",
        ),
        (
            (
                '{"id": 5, "shard": 0, "caption": "c", "media": "m", "bucket": "1x1x1", '
                '"latent_shape": [1]}'
            ),
            "expected strings for id",
        ),
    ],
)
def test_bad_index_line_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    (tmp_path / META_FILE).write_text(json.dumps(META.to_json()))
    (tmp_path / INDEX_FILE).write_text(line + "\n")
    with pytest.raises(LatentCacheError, match=message) as error:
        LatentCache(tmp_path)
    assert f"{tmp_path / INDEX_FILE}:1:" in str(error.value)


def test_duplicate_index_id(tmp_path: Path, record_for: Callable[..., ManifestRecord]) -> None:
    fill(tmp_path, record_for, ["a"])
    index = tmp_path / INDEX_FILE
    index.write_text(index.read_text() * 2)
    with pytest.raises(LatentCacheError, match=r":2: item 'a' is listed twice"):
        LatentCache(tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "not a latent cache"),
        ("{not json", "cache.json: invalid JSON at line 1 column 2"),
        ('{"format_version": 1, "preset": "tiny", "settings": {}}', "text_encoder: expected"),
        ("[]", "format_version: expected a JSON int"),
        (
            '{"format_version": 99, "preset": "t", "text_encoder": "b", "settings": {}}',
            "format_version 99 is not supported; expected 1",
        ),
    ],
)
def test_bad_cache_json(tmp_path: Path, text: str | None, message: str) -> None:
    if text is not None:
        (tmp_path / META_FILE).write_text(text)
    with pytest.raises(LatentCacheError, match=message):
        LatentCache(tmp_path)


def test_empty_cache_and_meta_settings_must_be_json(tmp_path: Path) -> None:
    LatentCacheWriter(tmp_path, META).flush()
    assert len(LatentCache(tmp_path)) == 0
    with pytest.raises(TypeError):
        CacheMeta("tiny", "builtin", {"device": torch.device("cpu")})


def test_open_shards_are_bounded_and_dropped_when_pickled(
    tmp_path: Path, record_for: Callable[..., ManifestRecord]
) -> None:
    fill(tmp_path, record_for, ["a", "b", "c", "d", "e"])  # shards 0, 0, 1, 1, 2
    cache = LatentCache(tmp_path, max_open_shards=2)
    for index in (0, 2, 4, 3):
        cache[index]
    assert cache.open_shards == (2, 1)  # shard 0 was least recently used, so closed
    clone = pickle.loads(pickle.dumps(cache))
    assert clone.open_shards == ()
    assert torch.equal(clone[0].text, cache[0].text)
    cache.close()
    assert cache.open_shards == ()


def test_latent_dataset_batches_one_bucket_at_a_time(
    tmp_path: Path, record_for: Callable[..., ManifestRecord]
) -> None:
    items = fill(tmp_path, record_for, ["a", "big1", "b", "big2", "c"])
    dataset = LatentDataset(tmp_path)
    assert len(dataset) == 5
    sample: dict[str, Any] = dataset[1]
    assert sorted(sample) == ["caption", "fps", "latents", "mask", "text"]
    assert float(sample["fps"]) == 24.0
    assert torch.equal(sample["latents"], items["big1"]["latents"])
    assert sample["mask"].dtype == torch.bool

    sampler = BucketBatchSampler(dataset.buckets(), batch_size=2, seed=3)
    seen = []
    for batch in DataLoader(dataset, batch_sampler=sampler):
        assert batch["latents"].shape[0] == len(batch["caption"])
        assert batch["text"].shape[1:] == (6, 5)
        seen += batch["caption"]
    assert sorted(seen) == sorted(f"caption {name}" for name in items)


BUCKETS = {"16x16x5": list(range(10)), "32x32x5": list(range(10, 17)), "8x8x1": [17]}


def test_sampler_is_deterministic_per_seed_and_epoch() -> None:
    sampler = BucketBatchSampler(BUCKETS, batch_size=3, seed=1)
    epoch0 = list(sampler)
    assert epoch0 == BucketBatchSampler(BUCKETS, batch_size=3, seed=1).batches(0)
    assert epoch0 != sampler.batches(1)
    assert epoch0 != BucketBatchSampler(BUCKETS, batch_size=3, seed=2).batches(0)
    assert len(sampler) == len(epoch0) == 4 + 3 + 1
    assert sorted(i for batch in epoch0 for i in batch) == list(range(18))
    for batch in epoch0:
        assert len({label for label, indices in BUCKETS.items() if batch[0] in indices}) == 1
        assert all(
            any(i in indices and batch[0] in indices for indices in BUCKETS.values()) for i in batch
        )


def test_sampler_resumes_at_a_position() -> None:
    sampler = BucketBatchSampler(BUCKETS, batch_size=4, seed=5)
    sampler.set_epoch(2, 3)
    assert list(sampler) == sampler.batches(2)[3:]
    assert list(sampler) == sampler.batches(2)[3:]  # iteration does not move the position
    sampler.set_epoch(3)
    assert list(sampler) == sampler.batches(3)
    with pytest.raises(ValueError, match="0 <= index <= 6"):
        sampler.set_epoch(0, 7)


def test_sampler_without_shuffle_drop_last_and_replicas() -> None:
    plain = BucketBatchSampler(BUCKETS, batch_size=4, shuffle=False, drop_last=True)
    assert list(plain) == [[0, 1, 2, 3], [4, 5, 6, 7], [10, 11, 12, 13]]
    assert len(plain) == 3

    replicas = [
        BucketBatchSampler(BUCKETS, batch_size=3, seed=4, num_replicas=3, rank=rank)
        for rank in range(3)
    ]
    shares = [replica.batches(0) for replica in replicas]
    assert [len(share) for share in shares] == [len(replica) for replica in replicas] == [2, 2, 2]
    whole = BucketBatchSampler(BUCKETS, batch_size=3, seed=4).batches(0)
    assert [batch for pair in zip(*shares, strict=True) for batch in pair] == whole[:6]


@pytest.mark.parametrize(
    "arguments",
    [
        {"batch_size": 0},
        {"batch_size": 2, "seed": -1},
        {"batch_size": 2, "num_replicas": 2, "rank": 2},
    ],
)
def test_sampler_rejects_bad_arguments(arguments: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="expected batch_size >= 1"):
        BucketBatchSampler(BUCKETS, **arguments)


@pytest.mark.fault("files")
def test_an_index_line_with_a_bad_frame_rate_is_refused(
    tmp_path: Path, record_for: Callable[..., ManifestRecord]
) -> None:
    fill(tmp_path, record_for, ["a"])
    line = json.loads((tmp_path / INDEX_FILE).read_text())
    for bad in (0, -1, "24", True):
        (tmp_path / INDEX_FILE).write_text(json.dumps({**line, "fps": bad}) + "\n")
        with pytest.raises(LatentCacheError, match=r"index\.jsonl:1: fps must be a number > 0"):
            LatentCache(tmp_path)


def test_an_index_written_before_frame_rates_reads_with_the_default(
    tmp_path: Path, record_for: Callable[..., ManifestRecord]
) -> None:
    fill(tmp_path, record_for, ["a"])
    line = json.loads((tmp_path / INDEX_FILE).read_text())
    del line["fps"]
    (tmp_path / INDEX_FILE).write_text(json.dumps(line) + "\n")
    assert LatentCache(tmp_path).entries[0].fps is None
    assert float(LatentDataset(tmp_path, default_fps=8.0)[0]["fps"]) == 8.0
