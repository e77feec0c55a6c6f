# /// script
# requires-python = ">=3.11"
# dependencies = ["aiprod-trainer"]
# ///
"""Train a tiny AIPROD model end to end on synthetic clips, then generate videos with it.

The README's main job (``nox -s demo``). Stages: synthetic data (coloured shapes moving
over a background, with captions; a train/val split), VAE training of the tiny preset,
latents (the trained VAE and the built-in text encoder), transformer training, export of
the bundle to the registry's path for ``aiprod-tiny`` (so ``aiprod-generate --model
aiprod-tiny`` works afterwards), evaluation and generation. Videos, a contact sheet and
``report.json`` (stage timings, losses, colour checks) go to the output folder.

It prints the evidence that the model learned, and fails (exit 1) when it does not hold:
the held-out loss of the trained transformer is at least 30 % below the untrained one's;
the normalised latents' statistics, image-to-video conditioning and the trained upsampler
meet their thresholds; and the generated videos show the colours and the motion their
prompts name. The shape check is reported as a target; ``--long`` trains the ``tiny-x2``
preset 8 times longer (about 45 minutes on 2 CPU cores, registered as ``aiprod-tiny-x2``)
and enforces it too.

A second run reuses the dataset, the latents and the trained checkpoints from the work
folder and only evaluates and generates; ``--retrain`` starts over. An interrupted run
continues where it stopped.

Examples:
    nox -s demo
    nox -s demo -- --retrain
    nox -s demo -- --threads 1        # a fixed CPU thread count (default: auto)
    nox -s demo -- --long             # the shape target enforced (about 45 minutes)
    uv run scripts/dev/demo.py --quick --output /tmp/demo --json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from aiprod_core.config import load_config
from aiprod_core.errors import AiprodError
from aiprod_core.threads import add_threads_argument
from aiprod_trainer.demo import FULL, LONG, QUICK, DemoPaths, run_demo

EXIT_OK = 0
EXIT_EVIDENCE = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n", 1)[0],
        epilog="Exit status: 0 the evidence holds, 1 an evidence check failed, 2 an error "
        "(the message says which), 130 interrupted (run again to continue).",
    )
    parser.add_argument(
        "--retrain",
        action="store_true",
        help="start over: delete the work folder (data, latents, checkpoints) and train again",
    )
    parser.add_argument(
        "--output",
        type=Path,
        metavar="DIR",
        help="where videos, the contact sheet and report.json go (default: <outputs>/demo)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        metavar="DIR",
        help="data, latents and training runs (default: the output folder's work/)",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        action="store_true",
        help="tiny settings that run in seconds (tests); evidence is reported, not enforced "
        "(default output: <outputs>/demo-quick)",
    )
    size.add_argument(
        "--long",
        action="store_true",
        help="the tiny-x2 preset with 8 times the transformer training (about 45 minutes on "
        "2 CPU cores): the shape check is enforced too; registers aiprod-tiny-x2 "
        "(default output: <outputs>/demo-long)",
    )
    add_threads_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; return the exit status."""
    args = build_parser().parse_args(argv)
    profile = QUICK if args.quick else LONG if args.long else FULL
    stream = sys.stderr if args.json else sys.stdout
    try:
        config = load_config()
        paths = DemoPaths.from_config(
            config, output=args.output, work=args.workdir, profile=profile
        )
        report = run_demo(
            profile, paths, config, retrain=args.retrain, stream=stream, threads=args.threads
        )
    except KeyboardInterrupt:
        print("interrupted: run the demo again to continue where it stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (AiprodError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(report.to_json(), indent=2) if args.json else report.render())
    if report.enforced and not report.passed:
        print(
            "error: the evidence that the model learned does not hold: "
            + "; ".join(report.failures),
            file=sys.stderr,
        )
        return EXIT_EVIDENCE
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
