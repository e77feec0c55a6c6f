"""Statistics of a dataset manifest: counts per bucket, durations, frame rates, captions, colours.

:func:`manifest_stats` needs only the manifest. :func:`middle_frames` decodes the middle
frame of each clip (for a contact sheet or colour statistics), listing the clips it cannot
read instead of stopping; :func:`color_stats` summarises those frames' pixels.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from aiprod_trainer.data.buckets import group_by_bucket
from aiprod_trainer.data.ingest import IngestError, decode_frames
from aiprod_trainer.data.manifest import Manifest, ManifestRecord

Progress = Callable[[Sequence[ManifestRecord]], Iterable[ManifestRecord]]


@dataclass(frozen=True)
class Summary:
    """Smallest, mean and largest of some values."""

    min: float
    mean: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary | None:
        """The summary of ``values``, or None when there are none."""
        if not values:
            return None
        return cls(min=min(values), mean=statistics.fmean(values), max=max(values))

    def to_dict(self) -> dict[str, float]:
        """Rounded to 4 decimals."""
        return {name: round(getattr(self, name), 4) for name in ("min", "mean", "max")}


@dataclass(frozen=True)
class MiddleFrame:
    """The middle frame of one record's clip."""

    record: ManifestRecord
    pixels: npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Unreadable:
    """A record whose media could not be decoded, and why."""

    media: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"media": self.media, "reason": self.reason}


def manifest_stats(manifest: Manifest) -> dict[str, object]:
    """Counts and summaries read from the manifest alone (no media is opened)."""
    records = manifest.records
    durations = [record.frames / record.fps for record in records]
    words = [len(record.caption.split()) for record in records]
    chars = [len(record.caption) for record in records]
    fps = Counter(_fps_label(record.fps) for record in records)
    return {
        "manifest": str(manifest.path),
        "records": len(records),
        "buckets": {bucket.label: len(group) for bucket, group in group_by_bucket(records).items()},
        "duration_s": _summary_dict(durations),
        "fps": dict(sorted(fps.items(), key=lambda item: float(item[0]))),
        "caption_words": _summary_dict(words),
        "caption_chars": _summary_dict(chars),
        "distinct_captions": len({record.caption for record in records}),
    }


def _summary_dict(values: Sequence[float]) -> dict[str, float] | None:
    summary = Summary.of(values)
    return summary.to_dict() if summary is not None else None


def _fps_label(fps: float) -> str:
    return f"{fps:.3f}".rstrip("0").rstrip(".")


def middle_frames(
    manifest: Manifest, records: Sequence[ManifestRecord], *, progress: Progress = iter
) -> tuple[list[MiddleFrame], list[Unreadable]]:
    """Decode the middle frame (index ``frames // 2``) of each record's clip.

    Returns the frames decoded and the records that could not be, with the reason.
    """
    decoded: list[MiddleFrame] = []
    failed: list[Unreadable] = []
    for record in progress(records):
        middle = record.frames // 2
        try:
            pixels = decode_frames(manifest.media_path(record), middle + 1)[middle]
        except IngestError as exc:
            failed.append(Unreadable(record.media, str(exc)))
            continue
        decoded.append(MiddleFrame(record, pixels))
    return decoded, failed


def color_stats(frames: Sequence[npt.NDArray[np.uint8]]) -> dict[str, object] | None:
    """Per-channel mean and standard deviation of all pixels, and the mean brightness.

    Returns None when there are no frames.
    """
    if not frames:
        return None
    pixels = np.concatenate([frame.reshape(-1, 3) for frame in frames]).astype(np.float64)
    mean = pixels.mean(axis=0)
    std = pixels.std(axis=0)
    luma = pixels @ np.asarray([0.299, 0.587, 0.114])
    return {
        "frames": len(frames),
        "mean_rgb": [round(float(value), 2) for value in mean],
        "std_rgb": [round(float(value), 2) for value in std],
        "mean_brightness": round(float(luma.mean()), 2),
    }
