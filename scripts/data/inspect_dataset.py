# /// script
# requires-python = ">=3.11"
# dependencies = ["aiprod-trainer", "tqdm>=4.66"]
# ///
"""Show a dataset's statistics and draw a contact sheet of its clips' middle frames.

Statistics come from the manifest: records, buckets, durations, frame rates and caption
lengths. --colors adds colour statistics of every clip's middle frame; --sheet PATH writes
a PNG grid of the first --max-tiles clips' middle frames with their captions under them.
Clips that cannot be decoded are listed and left out.

Exit status: 0 done, 1 some clips could not be decoded, 2 bad arguments or manifest.

Examples:
    uv run scripts/data/inspect_dataset.py data/shapes/manifest.jsonl
    uv run scripts/data/inspect_dataset.py data/shapes/manifest.jsonl --sheet sheet.png --colors --json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from aiprod_trainer.data.contact_sheet import write_contact_sheet
from aiprod_trainer.data.dataset_stats import (
    MiddleFrame,
    color_stats,
    manifest_stats,
    middle_frames,
)
from aiprod_trainer.data.manifest import ManifestRecord, load_manifest
from aiprod_trainer.data.manifest_errors import ManifestError, ManifestFileError

EXIT_OK = 0
EXIT_UNREADABLE = 1
EXIT_USAGE = 2


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n", 1)[0],
        epilog="Exit status: 0 done, 1 some clips could not be decoded, 2 bad arguments or manifest.",
    )
    parser.add_argument("manifest", type=Path, help="the dataset's JSONL manifest")
    parser.add_argument("--sheet", type=Path, help="write a contact-sheet PNG here")
    parser.add_argument(
        "--max-tiles", type=_positive, default=24, help="clips on the sheet (default 24)"
    )
    parser.add_argument("--columns", type=_positive, default=4, help="sheet columns (default 4)")
    parser.add_argument(
        "--tile-width", type=_positive, default=160, help="tile width in pixels (default 160)"
    )
    parser.add_argument(
        "--colors", action="store_true", help="colour statistics of every clip's middle frame"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the statistics as JSON")
    return parser


def _summary_line(name: str, summary: Any, unit: str = "") -> str:
    if summary is None:
        return f"  {name}: -"
    return (
        f"  {name}: min {summary['min']:g}{unit}, mean {summary['mean']:g}{unit}, "
        f"max {summary['max']:g}{unit}"
    )


def render_text(stats: dict[str, Any]) -> str:
    """The human-readable statistics."""
    buckets = ", ".join(f"{label}: {count}" for label, count in stats["buckets"].items())
    fps = ", ".join(f"{value}: {count}" for value, count in stats["fps"].items())
    lines = [
        f"{stats['manifest']}: {stats['records']} record{'' if stats['records'] == 1 else 's'}",
        f"  buckets: {buckets or '-'}",
        _summary_line("duration", stats["duration_s"], " s"),
        f"  fps: {fps or '-'}",
        _summary_line("caption words", stats["caption_words"]),
        f"  distinct captions: {stats['distinct_captions']}",
    ]
    colors = stats.get("colors")
    if colors is not None:
        lines.append(
            f"  colours ({colors['frames']} middle frames): mean RGB {colors['mean_rgb']}, "
            f"std {colors['std_rgb']}, brightness {colors['mean_brightness']}"
        )
    sheet = stats.get("sheet")
    if sheet is not None:
        lines.append(
            f"contact sheet: {sheet['path']} ({sheet['width']}x{sheet['height']}, "
            f"{sheet['tiles']} clips)"
        )
    if stats.get("unreadable"):
        lines.append(f"could not decode {len(stats['unreadable'])}:")
        lines.extend(f"  {item['media']}: {item['reason']}" for item in stats["unreadable"])
    return "\n".join(lines)


def draw_sheet(
    path: Path, frames: Sequence[MiddleFrame], args: argparse.Namespace
) -> dict[str, object]:
    """Write the contact sheet of ``frames`` to ``path``; return its description."""
    image = write_contact_sheet(
        path,
        [frame.pixels for frame in frames],
        [frame.record.caption for frame in frames],
        columns=args.columns,
        tile_width=args.tile_width,
    )
    return {"path": str(path), "width": image.width, "height": image.height, "tiles": len(frames)}


def main(argv: Sequence[str] | None = None) -> int:
    """Inspect the manifest named on the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        manifest = load_manifest(args.manifest)
    except (ManifestFileError, ManifestError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    stats: dict[str, Any] = manifest_stats(manifest)
    sheet_missing = False

    if args.sheet is not None or args.colors:
        records = manifest.records if args.colors else manifest.records[: args.max_tiles]

        def progress(items: Sequence[ManifestRecord]) -> tqdm[ManifestRecord]:
            return tqdm(items, desc="frames", unit="clip", disable=args.quiet, file=sys.stderr)

        frames, unreadable = middle_frames(manifest, records, progress=progress)
        stats["unreadable"] = [item.to_dict() for item in unreadable]
        if args.colors:
            stats["colors"] = color_stats([frame.pixels for frame in frames])
        if args.sheet is not None and not frames:
            print(
                f"error: {args.sheet}: no clip to draw; the sheet was not written", file=sys.stderr
            )
            sheet_missing = True
        elif args.sheet is not None:
            try:
                stats["sheet"] = draw_sheet(args.sheet, frames[: args.max_tiles], args)
            except OSError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return EXIT_USAGE

    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print(render_text(stats))
    return EXIT_UNREADABLE if stats.get("unreadable") or sheet_missing else EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
