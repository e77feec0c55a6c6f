"""Dataset preparation: turn a folder or manifest of videos into a bucketed training set.

For each source video :func:`prepare_dataset` probes it, filters it, picks its bucket,
decodes it (every frame, so that a file broken part way is noticed; the bucket keeps the
first ones), resizes and centre-crops the kept frames, and writes the clip as H.264 MP4 to
``<output>/clips/``. Captions come from the input manifest, else from a sidecar
``<stem>.txt`` beside the video. A file that cannot be used is listed in the
:class:`PreparationReport` with the reason and never stops the run; the manifest of the
prepared clips (``<output>/manifest.jsonl``) and the report (``<output>/report.json``) are
written atomically at the end.

A rerun into the same output tidies it: temporary files a killed run left (of the clips,
the manifest and the report) are deleted first, and once the new manifest is written, the
clips of earlier runs it no longer lists. Only names this module writes are touched, and
only in ``<output>/clips/`` (plus the two temporary names beside the manifest); each
deletion is listed in the report with the bytes it freed.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Literal

from aiprod_core.atomic import RemovedPath, atomic_write_text, remove_orphans, remove_path
from aiprod_pipelines.video_io import write_mp4
from aiprod_trainer.data.buckets import Bucket
from aiprod_trainer.data.ingest import (
    ClipFilter,
    IngestError,
    choose_bucket,
    decode_frames,
    find_videos,
    fit_frames,
    probe_video,
)
from aiprod_trainer.data.manifest import Manifest, ManifestRecord, write_manifest

CLIPS_DIR = "clips"
MANIFEST_NAME = "manifest.jsonl"
REPORT_NAME = "report.json"
#: x264 quality of prepared clips: visually lossless, and playable everywhere (crf 0 is not).
CLIP_CRF = 10
#: The names of prepared clips in ``clips/`` (see :func:`clip_name`).
CLIP_NAME = re.compile(r"\d{5,}_.+\.mp4", re.DOTALL)

SkipKind = Literal["unreadable", "filtered", "no_caption"]
Progress = Callable[[Sequence["Source"]], Iterable["Source"]]


@dataclass(frozen=True)
class Source:
    """One input video: where it is, its caption if a manifest gave one, and its report name."""

    path: Path
    caption: str | None
    shown: str


@dataclass(frozen=True)
class Skipped:
    """An input that was not prepared, and why."""

    media: str
    kind: SkipKind
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"media": self.media, "kind": self.kind, "reason": self.reason}


@dataclass(frozen=True)
class Removed:
    """A file of an earlier run deleted from the output: ``path`` relative to the output."""

    path: str
    bytes: int
    reason: str

    def to_dict(self) -> dict[str, str | int]:
        return {"path": self.path, "bytes": self.bytes, "reason": self.reason}


@dataclass
class PreparationReport:
    """What a preparation run did: the records written, the inputs skipped, and the files
    of earlier runs deleted from the output."""

    source: str
    output: Path
    prepared: list[ManifestRecord] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    removed: list[Removed] = field(default_factory=list)

    @property
    def manifest_path(self) -> Path | None:
        """The manifest written, or None when nothing was prepared."""
        return self.output / MANIFEST_NAME if self.prepared else None

    @property
    def report_path(self) -> Path:
        return self.output / REPORT_NAME

    def bucket_counts(self) -> dict[str, int]:
        """Prepared clips per bucket label, in bucket order."""
        counts = Counter(Bucket.of(record) for record in self.prepared)
        return {bucket.label: counts[bucket] for bucket in sorted(counts)}

    def to_dict(self) -> dict[str, object]:
        manifest = self.manifest_path
        return {
            "source": self.source,
            "output": str(self.output),
            "manifest": str(manifest) if manifest is not None else None,
            "inputs": len(self.prepared) + len(self.skipped),
            "prepared": len(self.prepared),
            "skipped": len(self.skipped),
            "buckets": self.bucket_counts(),
            "problems": [skipped.to_dict() for skipped in self.skipped],
            "removed": [removed.to_dict() for removed in self.removed],
        }


class _Skip(Exception):
    """Internal: this source is skipped for ``reason``."""

    def __init__(self, kind: SkipKind, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def sources_from_folder(folder: Path, *, exclude: Path | None = None) -> list[Source]:
    """Every video under ``folder`` (see :func:`~aiprod_trainer.data.ingest.find_videos`)."""
    return [
        Source(path, None, path.relative_to(folder).as_posix())
        for path in find_videos(folder, exclude=exclude)
    ]


def sources_from_manifest(manifest: Manifest) -> list[Source]:
    """The manifest's records, with their captions, in file order."""
    return [
        Source(manifest.media_path(record), record.caption, record.media)
        for record in manifest.records
    ]


def sidecar_caption(video: Path) -> str:
    """The caption in ``<stem>.txt`` beside ``video``, stripped.

    Raises:
        IngestError: no sidecar, an unreadable one, or one holding only whitespace.
    """
    sidecar = video.with_suffix(".txt")
    try:
        text = sidecar.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise IngestError(
            sidecar,
            f"no caption: expected one in the input manifest or in a sidecar file {sidecar.name}",
        ) from None
    except UnicodeDecodeError:
        raise IngestError(sidecar, f"no caption: {sidecar.name} is not UTF-8 text") from None
    except OSError as exc:
        raise IngestError(
            sidecar, f"no caption: {sidecar.name} cannot be read ({exc.strerror})"
        ) from None
    if not text:
        raise IngestError(
            sidecar, f"no caption: {sidecar.name} is empty; expected the clip's caption"
        )
    return text


def check_buckets(buckets: Sequence[Bucket]) -> tuple[Bucket, ...]:
    """Validate the allowed buckets: at least one, and even sizes (H.264 yuv420p).

    Raises:
        ValueError: no bucket, or one with an odd width or height.
    """
    if not buckets:
        raise ValueError("buckets: expected at least one bucket WIDTHxHEIGHTxFRAMES")
    for bucket in buckets:
        if bucket.width % 2 or bucket.height % 2:
            raise ValueError(
                f"bucket {bucket.label}: expected an even width and height (H.264 stores "
                "yuv420p video in 2x2 blocks)"
            )
    return tuple(sorted(set(buckets)))


def prepare_dataset(
    sources: Sequence[Source],
    output: Path,
    buckets: Sequence[Bucket],
    clip_filter: ClipFilter | None = None,
    *,
    source_name: str = "",
    progress: Progress = iter,
) -> PreparationReport:
    """Prepare every source into ``output``; return what was done (also in ``report.json``).

    ``progress`` wraps the iteration over the sources (pass a tqdm factory for a bar).
    Temporary files an interrupted earlier run left are deleted first; when a manifest is
    written, the clips in ``clips/`` it does not list (an earlier run's) are deleted after
    it, except a clip that is one of ``sources``.

    Raises:
        ValueError: the buckets are invalid (see :func:`check_buckets`).
        VideoIOError: a prepared clip cannot be written (an output problem, not an input one).
        OSError: a leftover file cannot be deleted; the message names it.
    """
    allowed = check_buckets(buckets)
    clip_filter = clip_filter or ClipFilter()
    report = PreparationReport(source=source_name, output=output)
    report.removed.extend(_remove_interrupted_writes(output))
    for index, source in enumerate(progress(sources)):
        try:
            report.prepared.append(_prepare_one(source, index, output, allowed, clip_filter))
        except _Skip as skip:
            report.skipped.append(Skipped(source.shown, skip.kind, skip.reason))
    if report.prepared:
        write_manifest(report.prepared, output / MANIFEST_NAME)
        inputs = {source.path for source in sources}
        report.removed.extend(_remove_unlisted_clips(output, report.prepared, inputs))
    atomic_write_text(report.report_path, json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def clip_name(index: int, stem: str) -> str:
    """The file name in ``clips/`` of the prepared clip of source number ``index``."""
    return f"{index:05d}_{stem}.mp4"


def _is_clip_name(name: str) -> bool:
    return CLIP_NAME.fullmatch(name) is not None


def _remove_interrupted_writes(output: Path) -> list[Removed]:
    """Delete the temporary clips, manifest and report a killed run left in ``output``."""
    orphans = remove_orphans(output, {MANIFEST_NAME, REPORT_NAME})
    orphans.extend(remove_orphans(output / CLIPS_DIR, _is_clip_name))
    return [_removed(output, orphan, "left by an interrupted write") for orphan in orphans]


def _remove_unlisted_clips(
    output: Path, records: Sequence[ManifestRecord], inputs: Iterable[Path]
) -> list[Removed]:
    """Delete the clips in ``clips/`` that ``records`` do not list and that are no input."""
    folder = output / CLIPS_DIR
    listed = {(output / record.media).resolve() for record in records}
    keep = listed | {Path(path).resolve() for path in inputs}
    removed: list[Removed] = []
    for entry in sorted(folder.iterdir()):
        if not _is_clip_name(entry.name) or entry.is_symlink() or not entry.is_file():
            continue
        if entry.resolve() in keep:
            continue
        gone = remove_path(entry, "a clip the new manifest does not list")
        removed.append(_removed(output, gone, "not in the new manifest"))
    return removed


def _removed(output: Path, removed: RemovedPath, reason: str) -> Removed:
    return Removed(removed.path.relative_to(output).as_posix(), removed.bytes, reason)


def _prepare_one(
    source: Source,
    index: int,
    output: Path,
    allowed: Sequence[Bucket],
    clip_filter: ClipFilter,
) -> ManifestRecord:
    try:
        probe = probe_video(source.path)
    except IngestError as exc:
        raise _Skip("unreadable", exc.reason) from exc
    rejection = clip_filter.rejection(probe)
    if rejection is not None:
        raise _Skip("filtered", rejection)
    bucket = choose_bucket(probe, allowed)
    if bucket is None:
        fewest = min(bucket.frames for bucket in allowed)
        raise _Skip(
            "filtered",
            f"too few frames: {probe.frames}, the smallest bucket needs {fewest}",
        )
    caption = source.caption
    if caption is None:
        try:
            caption = sidecar_caption(source.path)
        except IngestError as exc:
            raise _Skip("no_caption", exc.reason) from exc
    try:
        frames = decode_frames(source.path, bucket.frames)
    except IngestError as exc:
        raise _Skip("unreadable", exc.reason) from exc
    fitted = fit_frames(frames, bucket.width, bucket.height)
    media = f"{CLIPS_DIR}/{clip_name(index, source.path.stem)}"
    write_mp4(output / media, fitted, fps=Fraction(probe.fps), crf=CLIP_CRF, odd_size="error")
    return ManifestRecord(
        media=media,
        caption=caption,
        width=bucket.width,
        height=bucket.height,
        frames=bucket.frames,
        fps=float(probe.fps),
    )
