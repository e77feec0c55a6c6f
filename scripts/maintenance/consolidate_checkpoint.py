# /// script
# requires-python = ">=3.11"
# dependencies = ["aiprod-trainer"]
# ///
"""Turn an FSDP run's sharded checkpoint into one safetensors bundle for inference.

``consolidate_checkpoint RUN_DIR`` reads the run's newest checkpoint (``--step N`` picks
another), verifies every shard against the sha256 recorded when it was written, loads the
shards into the run's starting model in this one process, merges LoRA adapters into the
base, and writes ``RUN_DIR/consolidated-step-<step>.safetensors`` (``--output PATH``)
atomically with its ``.sha256`` sidecar. The file loads like any bundle:
``aiprod-generate --checkpoint PATH``. See ``aiprod_trainer.training.consolidation``.

Exit status: 0 when the bundle was written, 1 when it could not be (the message says why).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from aiprod_core.errors import AiprodError
from aiprod_trainer.training.consolidation import consolidate_run

EXIT_OK = 0
EXIT_ERROR = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="consolidate_checkpoint",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("run_dir", type=Path, help="the run folder (holds config.json)")
    parser.add_argument("--step", type=int, help="the checkpoint's step (default: the newest)")
    parser.add_argument("--output", type=Path, help="where to write the bundle")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Write the consolidated bundle; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        written = consolidate_run(args.run_dir, args.output, args.step)
    except (AiprodError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if args.json:
            print(json.dumps({"run_dir": str(args.run_dir), "error": str(exc)}, indent=2))
        return EXIT_ERROR
    if args.json:
        print(json.dumps({"run_dir": str(args.run_dir), "bundle": str(written)}, indent=2))
    else:
        print(f"wrote {written}")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
