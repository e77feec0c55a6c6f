"""The precomputed latent cache: VAE latents and text embeddings of a dataset, on disk.

``scripts/data/compute_latents.py`` writes a cache once; training reads it every epoch, so
neither the VAE nor the text encoder runs in the training loop. A cache is a folder::

    cache.json                 CacheMeta: format version, model preset, text encoder kind,
                               the settings the latents were made with
    shard-00000.safetensors    per item: "<id>.latents" [C, T, h, w] float,
    shard-00001.safetensors    "<id>.text" [L, D] float, "<id>.mask" [L] bool
    index.jsonl                one line per finished item: id, shard, caption, media,
                               bucket "WxHxF", latent_shape [C, T, h, w]

Crash safety: :meth:`LatentCacheWriter.flush` writes a shard atomically and only then
appends (and fsyncs) its items' index lines, so the index never names an item whose
tensors are not on disk. A run that dies leaves at worst a shard the index does not
reference (ignored, and overwritten when the run resumes) or a torn last index line
(ignored with a :class:`LatentCacheWarning`; its item is encoded again). A resumed run
asks :meth:`LatentCacheWriter.done_ids` which items to skip.

Reading: :class:`LatentCache` opens shards lazily and keeps a few open (least recently
used first to close); :class:`LatentDataset` is the torch Dataset over it;
:class:`aiprod_trainer.data.bucket_sampler.BucketBatchSampler` batches items of one latent
shape together.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from torch.utils.data import Dataset

from aiprod_core.atomic import atomic_path, atomic_write_text
from aiprod_core.documents import (
    LINE_LIMITS,
    DocumentError,
    document_problem,
    parse_json,
    read_document,
)
from aiprod_core.errors import AiprodError
from aiprod_trainer.data.buckets import Bucket
from aiprod_trainer.data.manifest import ManifestRecord

FORMAT_VERSION = 1
META_FILE = "cache.json"
INDEX_FILE = "index.jsonl"
SHARD_PATTERN = re.compile(r"shard-(\d{5,})\.safetensors")
DEFAULT_SHARD_SIZE = 64


def shard_name(number: int) -> str:
    """The file name of shard ``number``: ``shard-00003.safetensors``."""
    return f"shard-{number:05d}.safetensors"


class LatentCacheError(AiprodError, ValueError):
    """A cache folder is missing, corrupt, or was made with other settings; names the file."""


class LatentCacheWarning(UserWarning):
    """Something in a cache was skipped as the leftover of an interrupted write."""


@dataclass(frozen=True)
class CacheMeta:
    """What ``cache.json`` records: how the latents were made.

    ``settings`` holds what else decides the tensors (weights, mean or sampled latents,
    the VAE and text encoder configs); it must be JSON, and is stored as JSON reads back.
    """

    preset: str
    text_encoder: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings", json.loads(json.dumps(dict(self.settings))))

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "preset": self.preset,
            "text_encoder": self.text_encoder,
            "settings": dict(self.settings),
        }

    @classmethod
    def read(cls, path: Path) -> CacheMeta:
        """Read and check ``cache.json``; a LatentCacheError names the file and the problem."""
        if not path.is_file():
            raise LatentCacheError(
                f"{path.parent}: not a latent cache (no {META_FILE}); expected a folder "
                "written by scripts/data/compute_latents.py"
            )
        data = read_document(path, "json", error=LatentCacheError)
        expected = {"format_version": int, "preset": str, "text_encoder": str, "settings": dict}
        for key, kind in expected.items():
            if not isinstance(data, dict) or not isinstance(data.get(key), kind):
                raise LatentCacheError(
                    f"{path}: {key}: expected a JSON {kind.__name__} (keys: {', '.join(expected)})"
                )
        if data["format_version"] != FORMAT_VERSION:
            raise LatentCacheError(
                f"{path}: format_version {data['format_version']} is not supported; expected "
                f"{FORMAT_VERSION} (recompute the cache with scripts/data/compute_latents.py)"
            )
        return cls(data["preset"], data["text_encoder"], data["settings"])

    def differences(self, other: CacheMeta) -> list[str]:
        """Each differing top-level key or setting, ``"preset: cache has 'a', expected 'b'"``."""
        mine, theirs = self.to_json(), other.to_json()
        mine.update({f"settings.{k}": v for k, v in mine.pop("settings").items()})
        theirs.update({f"settings.{k}": v for k, v in theirs.pop("settings").items()})
        return [
            f"{key}: cache has {mine.get(key)!r}, expected {theirs.get(key)!r}"
            for key in sorted(mine.keys() | theirs.keys())
            if mine.get(key) != theirs.get(key)
        ]


@dataclass(frozen=True)
class IndexEntry:
    """One finished item as ``index.jsonl`` lists it."""

    id: str
    shard: int
    caption: str
    media: str
    bucket: str
    latent_shape: tuple[int, ...]
    fps: float | None = None
    """The clip's frame rate (None in caches written before it was recorded)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "shard": self.shard,
            "caption": self.caption,
            "media": self.media,
            "bucket": self.bucket,
            "latent_shape": list(self.latent_shape),
            "fps": self.fps,
        }


@dataclass(frozen=True)
class LatentItem:
    """One cached item: its latents, text embedding and mask, and where it came from."""

    id: str
    latents: torch.Tensor
    text: torch.Tensor
    mask: torch.Tensor
    caption: str
    media: str
    bucket: str
    fps: float | None = None


def read_index(folder: Path) -> tuple[list[IndexEntry], bool]:
    """The entries of ``folder/index.jsonl`` and whether a torn last line was skipped.

    The last line without its newline is the leftover of an interrupted append: it is
    skipped with a :class:`LatentCacheWarning`. Any other bad line is a LatentCacheError.
    """
    path = folder / INDEX_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [], False
    lines = raw.split(b"\n")
    torn = lines.pop() != b""  # a complete file ends with "\n", leaving b"" here
    if torn:
        warnings.warn(
            f"{path}: ignoring a torn last line (an interrupted write); its item counts as "
            "not cached",
            LatentCacheWarning,
            stacklevel=2,
        )
    entries: list[IndexEntry] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        entry = _parse_entry(line, f"{path}:{number}")
        if entry.id in seen:
            raise LatentCacheError(f"{path}:{number}: item {entry.id!r} is listed twice")
        seen.add(entry.id)
        entries.append(entry)
    return entries, torn


def _parse_entry(line: bytes, where: str) -> IndexEntry:
    try:
        data = parse_json(line, where, limits=LINE_LIMITS)
        shape = tuple(data["latent_shape"])
        entry = IndexEntry(
            data["id"],
            data["shard"],
            data["caption"],
            data["media"],
            data["bucket"],
            shape,
            data.get("fps"),
        )
    except (DocumentError, KeyError, TypeError) as exc:
        if isinstance(exc, DocumentError):
            detail = document_problem(exc)
        else:
            detail = f"{type(exc).__name__}: {exc}"
        raise LatentCacheError(
            f"{where}: expected a JSON object with id, shard, caption, media, bucket and "
            f"latent_shape ({detail})"
        ) from None
    texts = (entry.id, entry.caption, entry.media, entry.bucket)
    if not all(isinstance(value, str) for value in texts) or not (
        isinstance(entry.shard, int) and all(isinstance(size, int) for size in shape)
    ):
        raise LatentCacheError(
            f"{where}: expected strings for id, caption, media and bucket, an integer shard "
            "and an integer latent_shape"
        )
    if entry.fps is not None and (
        isinstance(entry.fps, bool)
        or not isinstance(entry.fps, int | float)
        or not 0 < entry.fps < float("inf")
    ):
        raise LatentCacheError(f"{where}: fps must be a number > 0 or null, got {entry.fps!r}")
    try:
        Bucket.parse(entry.bucket)
    except ValueError as exc:
        raise LatentCacheError(f"{where}: {exc}") from None
    return entry


class LatentCacheWriter:
    """Adds items to a cache folder, a shard at a time; resumes a cache it finds there.

    ``meta`` must equal the ``cache.json`` already in the folder (else a LatentCacheError
    lists the differences: latents made another way must go to another folder). Items are
    buffered by :meth:`add` and written by :meth:`flush`, which :meth:`add` calls every
    ``shard_size`` items. Used as a context manager, the last shard is flushed on a clean
    exit; after an exception buffered items are dropped (they are encoded again on resume).
    """

    def __init__(
        self, folder: str | os.PathLike[str], meta: CacheMeta, shard_size: int = DEFAULT_SHARD_SIZE
    ) -> None:
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        self.folder = Path(folder)
        self.meta = meta
        self.shard_size = shard_size
        meta_path = self.folder / META_FILE
        if meta_path.exists():
            differences = CacheMeta.read(meta_path).differences(meta)
            if differences:
                raise LatentCacheError(
                    f"{meta_path}: this cache was made with other settings ("
                    + "; ".join(differences)
                    + "); use another cache folder or delete this one"
                )
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(meta_path, json.dumps(meta.to_json(), indent=2) + "\n")
        entries, torn = read_index(self.folder)
        if torn:  # drop the fragment, so the next append does not extend it
            text = "".join(json.dumps(entry.to_json()) + "\n" for entry in entries)
            atomic_write_text(self.folder / INDEX_FILE, text)
        self._done = {entry.id for entry in entries}
        self.next_shard = max((entry.shard for entry in entries), default=-1) + 1
        self.shards_written = 0
        self._buffer: dict[str, torch.Tensor] = {}
        self._pending: list[IndexEntry] = []

    def done_ids(self) -> frozenset[str]:
        """The ids of the items already in the cache (written and indexed)."""
        return frozenset(self._done)

    def add(
        self,
        item_id: str,
        latents: torch.Tensor,
        text: torch.Tensor,
        mask: torch.Tensor,
        record: ManifestRecord,
    ) -> None:
        """Buffer one item; flushes a shard once ``shard_size`` items are buffered."""
        if item_id in self._done or any(entry.id == item_id for entry in self._pending):
            raise ValueError(f"item {item_id!r} is already in the cache")
        if latents.ndim != 4 or not latents.is_floating_point():
            raise ValueError(f"latents of {item_id!r}: expected float [C, T, h, w]")
        if text.ndim != 2 or not text.is_floating_point():
            raise ValueError(f"text of {item_id!r}: expected float [L, D]")
        if mask.shape != text.shape[:1]:
            raise ValueError(f"mask of {item_id!r}: expected shape [{text.shape[0]}]")
        for name, tensor in (("latents", latents), ("text", text), ("mask", mask.bool())):
            self._buffer[f"{item_id}.{name}"] = tensor.detach().to("cpu").contiguous().clone()
        bucket = Bucket.of(record).label
        shape = tuple(int(size) for size in latents.shape)
        self._pending.append(
            IndexEntry(
                item_id, self.next_shard, record.caption, record.media, bucket, shape, record.fps
            )
        )
        if len(self._pending) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        """Write the buffered items as the next shard, then append their index lines."""
        if not self._pending:
            return
        shard = self.folder / shard_name(self.next_shard)
        metadata = {"aiprod.cache.format": str(FORMAT_VERSION)}
        with atomic_path(shard) as temp:
            safetensors.torch.save_file(self._buffer, temp, metadata=metadata)
        lines = "".join(json.dumps(entry.to_json()) + "\n" for entry in self._pending)
        with (self.folder / INDEX_FILE).open("ab") as stream:
            start = stream.tell()
            try:
                stream.write(lines.encode("utf-8"))
                stream.flush()
                os.fsync(stream.fileno())
            except BaseException:  # keep the index whole: the shard is an orphan until retried
                stream.truncate(start)
                raise
        self._done.update(entry.id for entry in self._pending)
        self._buffer, self._pending = {}, []
        self.next_shard += 1
        self.shards_written += 1

    def __enter__(self) -> LatentCacheWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self.flush()


class LatentCache:
    """Reads a cache folder: ``cache[i]`` is a :class:`LatentItem`, in index order.

    Shards are opened on first use; at most ``max_open_shards`` stay open. Problems with a
    shard (missing, not safetensors, lacking a listed tensor, a shape other than the index
    says) are LatentCacheErrors naming the shard file.
    """

    def __init__(self, folder: str | os.PathLike[str], max_open_shards: int = 4) -> None:
        self.folder = Path(folder)
        self.meta = CacheMeta.read(self.folder / META_FILE)
        self.entries, _ = read_index(self.folder)
        self.max_open_shards = max(1, max_open_shards)
        self._open: OrderedDict[int, Any] = OrderedDict()

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> LatentItem:
        entry = self.entries[index]
        path = self.folder / shard_name(entry.shard)
        handle = self._shard(entry.shard, path)
        tensors = {}
        for name in ("latents", "text", "mask"):
            try:
                tensors[name] = handle.get_tensor(f"{entry.id}.{name}")
            except safetensors.SafetensorError:
                raise LatentCacheError(
                    f"{path}: lacks tensor '{entry.id}.{name}' that {INDEX_FILE} lists; "
                    "recompute the cache"
                ) from None
        if tuple(tensors["latents"].shape) != entry.latent_shape:
            raise LatentCacheError(
                f"{path}: '{entry.id}.latents' has shape {tuple(tensors['latents'].shape)}; "
                f"{INDEX_FILE} says {entry.latent_shape}"
            )
        return LatentItem(
            entry.id,
            tensors["latents"],
            tensors["text"],
            tensors["mask"].bool(),
            entry.caption,
            entry.media,
            entry.bucket,
            entry.fps,
        )

    def _shard(self, number: int, path: Path) -> Any:
        if number in self._open:
            self._open.move_to_end(number)
            return self._open[number]
        try:
            handle = safetensors.safe_open(str(path), framework="pt")
        except FileNotFoundError:
            raise LatentCacheError(
                f"{path}: shard missing; {INDEX_FILE} lists items in it (recompute the cache)"
            ) from None
        except (safetensors.SafetensorError, OSError) as exc:
            raise LatentCacheError(
                f"{path}: not a readable safetensors shard ({exc}); recompute the cache"
            ) from None
        self._open[number] = handle
        while len(self._open) > self.max_open_shards:
            self._open.popitem(last=False)
        return handle

    @property
    def open_shards(self) -> tuple[int, ...]:
        """Numbers of the shards open now, least recently used first."""
        return tuple(self._open)

    def buckets(self) -> dict[str, list[int]]:
        """Item indices per bucket label ("WxHxF"), smallest bucket first.

        One cache has one VAE, so items of one bucket share one latent shape.
        """
        groups: dict[str, list[int]] = {}
        for index, entry in enumerate(self.entries):
            groups.setdefault(entry.bucket, []).append(index)
        return {label: groups[label] for label in sorted(groups, key=Bucket.parse)}

    def close(self) -> None:
        """Close the open shards (they reopen on the next access)."""
        self._open.clear()

    def __getstate__(self) -> dict[str, Any]:
        """Open shards are not picklable: DataLoader workers open their own."""
        state = self.__dict__.copy()
        state["_open"] = OrderedDict()
        return state


class LatentDataset(Dataset[dict[str, Any]]):
    """Torch Dataset over a cache: ``{"latents", "text", "mask", "caption", "fps"}`` per
    item; ``fps`` is the clip's frame rate, or ``default_fps`` for a cache written before
    frame rates were recorded."""

    def __init__(
        self, cache: LatentCache | str | os.PathLike[str], default_fps: float = 24.0
    ) -> None:
        self.cache = cache if isinstance(cache, LatentCache) else LatentCache(cache)
        self.default_fps = default_fps

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.cache[index]
        return {
            "latents": item.latents,
            "text": item.text,
            "mask": item.mask,
            "caption": item.caption,
            "fps": torch.tensor(self.default_fps if item.fps is None else item.fps),
        }

    def buckets(self) -> dict[str, list[int]]:
        """See :meth:`LatentCache.buckets`."""
        return self.cache.buckets()
