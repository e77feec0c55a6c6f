# /// script
# requires-python = ">=3.11"
# dependencies = ["aiprod-trainer"]
# ///
"""Validate a dataset manifest (JSONL) and summarise its records by resolution bucket.

Every line is checked; all problems are printed to stderr, one per line, as
``<file>:<line>: <field>: <what was expected>``.

Exit status: 0 valid, 1 invalid manifest, 2 manifest file missing or unreadable.

Examples:
    uv run scripts/data/validate_manifest.py data/train.jsonl
    uv run scripts/data/validate_manifest.py data/train.jsonl --check-media --json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from aiprod_trainer import (
    Manifest,
    ManifestError,
    ManifestFileError,
    group_by_bucket,
    load_manifest,
)

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_NO_FILE = 2


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n", 1)[0],
        epilog="Exit status: 0 valid, 1 invalid manifest, 2 manifest file missing or unreadable.",
    )
    parser.add_argument("manifest", type=Path, help="path to the JSONL manifest")
    parser.add_argument(
        "--check-media",
        action="store_true",
        help="also check that every media file exists (relative paths are from the manifest's folder)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the result as JSON on stdout instead of text"
    )
    return parser


def summary(manifest: Manifest, shown: str, *, media_checked: bool) -> dict[str, object]:
    """The machine-readable summary of a valid manifest."""
    return {
        "manifest": shown,
        "valid": True,
        "media_checked": media_checked,
        "records": len(manifest),
        "buckets": [
            {
                "label": bucket.label,
                "width": bucket.width,
                "height": bucket.height,
                "frames": bucket.frames,
                "records": len(records),
            }
            for bucket, records in group_by_bucket(manifest.records).items()
        ],
    }


def render_text(manifest: Manifest, shown: str, *, media_checked: bool) -> str:
    """The human-readable summary: record count, then one row per bucket."""
    groups = group_by_bucket(manifest.records)
    media = ", media files checked" if media_checked else ""
    lines = [
        (
            f"{shown}: valid, {_plural(len(manifest), 'record')} "
            f"in {_plural(len(groups), 'bucket')}{media}"
        )
    ]
    if groups:
        width = max(len("bucket"), *(len(bucket.label) for bucket in groups))
        lines.append(f"  {'bucket':<{width}}  records")
        lines.extend(
            f"  {bucket.label:<{width}}  {len(records):>7}" for bucket, records in groups.items()
        )
    return "\n".join(lines)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def main(argv: Sequence[str] | None = None) -> int:
    """Validate the manifest named on the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    shown = str(args.manifest)
    try:
        manifest = load_manifest(args.manifest, check_media=args.check_media)
    except ManifestFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if args.json:
            print(json.dumps({"manifest": shown, "valid": False, "error": str(exc)}, indent=2))
        return EXIT_NO_FILE
    except ManifestError as exc:
        print(exc, file=sys.stderr)
        print(f"{shown}: invalid, {_plural(len(exc.issues), 'problem')}", file=sys.stderr)
        if args.json:
            issues = [issue.to_dict() for issue in exc.issues]
            print(json.dumps({"manifest": shown, "valid": False, "errors": issues}, indent=2))
        return EXIT_INVALID

    if args.json:
        print(json.dumps(summary(manifest, shown, media_checked=args.check_media), indent=2))
    else:
        print(render_text(manifest, shown, media_checked=args.check_media))
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
