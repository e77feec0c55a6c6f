# /// script
# requires-python = ">=3.11"
# dependencies = ["aiprod-trainer", "tqdm>=4.66"]
# ///
"""Make a synthetic video dataset: coloured shapes moving over a background, with captions.

Each clip shows a circle, square or triangle of one colour moving left, right, up or down
over a background of another colour, captioned like "a red circle moving left on a blue
background". The same --seed gives the same clips and captions. Writes clips/*.mp4 and
manifest.jsonl to --output; with --val-fraction also train.jsonl and val.jsonl (the last
clips are held out).

Exit status: 0 written, 2 bad arguments or the output cannot be written.

Examples:
    uv run scripts/data/make_synthetic_dataset.py --count 64 --output data/shapes
    uv run scripts/data/make_synthetic_dataset.py --count 200 --val-fraction 0.1 --seed 3 \\
        --colors red,green,blue,yellow --output data/shapes --json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from tqdm import tqdm

from aiprod_pipelines.video_io import VideoIOError
from aiprod_trainer.data.synthetic import MOTIONS, PALETTE, SHAPES, Motion, Shape, SyntheticSpace
from aiprod_trainer.data.synthetic_dataset import (
    DEFAULT_CRF,
    SyntheticDataset,
    SyntheticSettings,
    write_synthetic_dataset,
)

EXIT_OK = 0
EXIT_USAGE = 2


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip().lower() for name in text.split(",") if name.strip())


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n", 1)[0],
        epilog="Exit status: 0 written, 2 bad arguments or the output cannot be written.",
    )
    parser.add_argument("--output", type=Path, required=True, help="folder to write into")
    parser.add_argument("--count", type=int, default=64, help="number of clips (default 64)")
    parser.add_argument("--frames", type=int, default=9, help="frames per clip (default 9)")
    parser.add_argument("--width", type=int, default=32, help="width in pixels, even (default 32)")
    parser.add_argument(
        "--height", type=int, default=32, help="height in pixels, even (default 32)"
    )
    parser.add_argument("--fps", type=float, default=8.0, help="frames per second (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.0,
        help="share of clips held out in val.jsonl, 0 <= f < 1 (default 0: no split)",
    )
    parser.add_argument(
        "--colors",
        type=_names,
        default=tuple(PALETTE),
        help=f"comma-separated colours to use, at least two (default all: {','.join(PALETTE)})",
    )
    parser.add_argument(
        "--shapes",
        type=_names,
        default=SHAPES,
        help=f"comma-separated shapes to use (default all: {','.join(SHAPES)})",
    )
    parser.add_argument(
        "--motions",
        type=_names,
        default=MOTIONS,
        help=f"comma-separated directions to use (default all: {','.join(MOTIONS)})",
    )
    parser.add_argument(
        "--crf",
        type=int,
        default=DEFAULT_CRF,
        help=f"H.264 quality, 0 (lossless) .. 51 (worst) (default {DEFAULT_CRF})",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


def summary(dataset: SyntheticDataset, settings: SyntheticSettings) -> dict[str, object]:
    """The machine-readable summary of what was written."""
    return {
        "output": str(dataset.output),
        "clips": len(dataset.records),
        "train": dataset.train,
        "val": dataset.val,
        "manifests": {name: str(path) for name, path in dataset.manifests.items()},
        "seed": settings.seed,
        "width": settings.width,
        "height": settings.height,
        "frames": settings.frames,
        "fps": settings.fps,
        "captions": len({record.caption for record in dataset.records}),
    }


def render_text(dataset: SyntheticDataset) -> str:
    """The human-readable summary."""
    lines = [f"wrote {len(dataset.records)} clips to {dataset.output}"]
    lines.extend(f"  {name:<5} {path}" for name, path in dataset.manifests.items())
    if dataset.val:
        lines.append(f"  split: {dataset.train} train, {dataset.val} validation")
    lines.extend(f"  e.g. {record.caption!r}" for record in dataset.records[:3])
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Write the dataset described on the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        settings = SyntheticSettings(
            count=args.count,
            width=args.width,
            height=args.height,
            frames=args.frames,
            fps=args.fps,
            seed=args.seed,
            val_fraction=args.val_fraction,
            crf=args.crf,
            space=SyntheticSpace(
                colors=args.colors,
                shapes=cast(tuple[Shape, ...], args.shapes),
                motions=cast(tuple[Motion, ...], args.motions),
            ),
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    def progress(indices: range) -> tqdm[int]:
        return tqdm(indices, desc="clips", unit="clip", disable=args.quiet, file=sys.stderr)

    try:
        dataset = write_synthetic_dataset(args.output, settings, progress=progress)
    except (VideoIOError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(summary(dataset, settings), indent=2))
    else:
        print(render_text(dataset))
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
