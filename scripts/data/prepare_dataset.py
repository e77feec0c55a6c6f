# /// script
# requires-python = ">=3.11"
# dependencies = ["aiprod-trainer", "tqdm>=4.66"]
# ///
"""Prepare videos for training: probe, filter, resize and crop them into resolution buckets.

The input is a folder (searched recursively for .mp4, .webm, .mov, .avi and .mkv files of
any codec FFmpeg decodes) or a JSONL manifest. Each video is probed, filtered by duration
and size, assigned the nearest --bucket WIDTHxHEIGHTxFRAMES it has enough frames for,
decoded in full (a file broken part way, or holding fewer frames than its container says,
is skipped), trimmed to the bucket's frame count (from the start), scaled to cover the
bucket, centre-cropped, and written to OUTPUT/clips/. Captions come from the input manifest,
else from a sidecar <stem>.txt beside the video. OUTPUT/manifest.jsonl lists the prepared
clips; OUTPUT/report.json (also printed) lists every file skipped and why. A file that
cannot be read never stops the run.

Rerunning into the same OUTPUT removes what earlier runs left there: temporary files of a
killed run, and the clips in OUTPUT/clips/ the new manifest does not list (each is printed
with the bytes freed). Nothing else in OUTPUT is touched.

Exit status: 0 something was prepared, 1 nothing was, 2 bad arguments or input.

Examples:
    uv run scripts/data/prepare_dataset.py videos/ --output data/prepared --bucket 32x32x9
    uv run scripts/data/prepare_dataset.py raw.jsonl --output data/prepared \\
        --bucket 64x32x17 --bucket 32x64x17 --min-duration 1 --max-duration 30 --json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from aiprod_pipelines.video_io import VideoIOError
from aiprod_trainer.data.buckets import Bucket
from aiprod_trainer.data.ingest import VIDEO_SUFFIXES, ClipFilter
from aiprod_trainer.data.manifest import load_manifest
from aiprod_trainer.data.manifest_errors import ManifestError, ManifestFileError
from aiprod_trainer.data.preparation import (
    CLIPS_DIR,
    PreparationReport,
    Source,
    check_buckets,
    prepare_dataset,
    sources_from_folder,
    sources_from_manifest,
)

EXIT_OK = 0
EXIT_NOTHING_PREPARED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad arguments or input; the message says what was expected."""


def _bucket(text: str) -> Bucket:
    try:
        return Bucket.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n", 1)[0],
        epilog="Exit status: 0 something was prepared, 1 nothing was, 2 bad arguments or input.",
    )
    parser.add_argument(
        "input", type=Path, help="folder of videos (searched recursively) or a JSONL manifest"
    )
    parser.add_argument("--output", type=Path, required=True, help="folder to write into")
    parser.add_argument(
        "--bucket",
        type=_bucket,
        action="append",
        required=True,
        metavar="WxHxF",
        help="allowed bucket, e.g. 32x32x9 (width and height even; repeatable)",
    )
    parser.add_argument(
        "--min-duration", type=float, default=0.0, help="shortest clip kept, seconds (default 0)"
    )
    parser.add_argument(
        "--max-duration", type=float, default=None, help="longest clip kept, seconds (default any)"
    )
    parser.add_argument(
        "--min-size",
        type=int,
        default=1,
        help="smallest shorter side kept, pixels (default 1)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def gather_sources(source: Path, output: Path) -> list[Source]:
    """The input videos: a folder's files (minus our own output) or a manifest's records.

    Raises:
        UsageError: the input is missing, an invalid manifest, or holds no video.
    """
    if source.is_dir():
        sources = sources_from_folder(source, exclude=output / CLIPS_DIR)
        if not sources:
            raise UsageError(
                f"{source}: no video files found; expected files ending in "
                f"{', '.join(VIDEO_SUFFIXES)}"
            )
        return sources
    if not source.exists():
        raise UsageError(f"{source}: no such file or folder; expected a folder or a manifest")
    try:
        manifest = load_manifest(source)
    except (ManifestFileError, ManifestError) as exc:
        raise UsageError(str(exc)) from None
    if not manifest.records:
        raise UsageError(f"{source}: the manifest lists no clips")
    return sources_from_manifest(manifest)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def render_text(report: PreparationReport) -> str:
    """The human-readable report: what was prepared, per bucket, each file skipped, and
    each leftover of an earlier run removed."""
    inputs = len(report.prepared) + len(report.skipped)
    if report.prepared:
        done = f"prepared {len(report.prepared)} of {_plural(inputs, 'video')}"
        lines = [f"{done} into {report.manifest_path}"]
    else:
        lines = [f"nothing prepared: {_plural(inputs, 'video')} skipped"]
    lines.extend(f"  {label}: {count}" for label, count in report.bucket_counts().items())
    if report.skipped:
        lines.append(f"skipped {len(report.skipped)} (details in {report.report_path}):")
        lines.extend(
            f"  {skipped.media}: {skipped.kind}: {skipped.reason}" for skipped in report.skipped
        )
    if report.removed:
        freed = sum(removed.bytes for removed in report.removed)
        lines.append(
            f"removed {_plural(len(report.removed), 'leftover file')} of earlier runs "
            f"({freed:,} bytes freed):"
        )
        lines.extend(
            f"  {removed.path}: {removed.reason} ({removed.bytes:,} bytes)"
            for removed in report.removed
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Prepare the input named on the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        buckets = check_buckets(args.bucket)
        clip_filter = ClipFilter(args.min_duration, args.max_duration, args.min_size)
        sources = gather_sources(args.input, args.output)
    except (ValueError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    def progress(items: Sequence[Source]) -> tqdm[Source]:
        return tqdm(items, desc="videos", unit="video", disable=args.quiet, file=sys.stderr)

    try:
        report = prepare_dataset(
            sources,
            args.output,
            buckets,
            clip_filter,
            source_name=str(args.input),
            progress=progress,
        )
    except (VideoIOError, OSError) as exc:
        print(f"error: cannot write the prepared dataset: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        if not report.prepared:
            print(f"error: nothing prepared; see {report.report_path}", file=sys.stderr)
    else:
        print(render_text(report))
    return EXIT_OK if report.prepared else EXIT_NOTHING_PREPARED


if __name__ == "__main__":
    raise SystemExit(main())
