"""``aiprod-train CONFIG.yaml``: train a VAE, a transformer, LoRA adapters or the x2 latent
upsampler from a config.

    aiprod-train configs/dit.yaml                    # a new run in the config's run_dir
    aiprod-train configs/dit.yaml --resume           # continue from its latest checkpoint
    torchrun --nproc_per_node 2 -m aiprod_trainer.cli configs/dit.yaml

Exit status: 0 trained to ``max_steps`` (or stopped where asked with ``--stop-at-step``),
2 bad config or arguments, 1 another problem a user can fix (the message says which),
130/143 stopped by SIGINT/SIGTERM after writing a checkpoint to resume from.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from aiprod_core.errors import AiprodError, ConfigError
from aiprod_core.threads import add_threads_argument
from aiprod_trainer.config import TrainConfig, load_train_config
from aiprod_trainer.training.distributed import (
    DistributedContext,
    init_distributed,
    shutdown_distributed,
)
from aiprod_trainer.training.trainer import FitResult, Trainer

PROG = "aiprod-train"
#: The distribution that installs the ``aiprod-train`` command (``--version``).
DISTRIBUTION = "aiprod-trainer"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def version_text() -> str:
    """What ``--version`` prints: ``aiprod-train`` and the installed version."""
    try:
        return f"{PROG} {version(DISTRIBUTION)}"
    except PackageNotFoundError:  # run from a source tree without installing it
        return f"{PROG} (version unknown: {DISTRIBUTION} is not installed)"


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train an AIPROD VAE, transformer, LoRA adapter or x2 latent upsampler "
        "from a YAML config.",
        epilog="Example configs, every key commented: packages/aiprod-trainer/configs/.",
    )
    parser.add_argument("--version", action="version", version=version_text())
    parser.add_argument("config", type=Path, help="the training config (YAML)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the latest checkpoint in the run directory (a fresh start if "
        "there is none)",
    )
    parser.add_argument(
        "--max-steps",
        type=_positive,
        metavar="N",
        help="override training.max_steps (the learning-rate schedule follows it)",
    )
    parser.add_argument(
        "--stop-at-step",
        type=_positive,
        metavar="N",
        help="stop cleanly after step N with a checkpoint, keeping the schedule of max_steps",
    )
    add_threads_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser.parse_args(argv)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``aiprod-train`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    try:
        args = parse_arguments(argv)
    except SystemExit as exc:  # --help exits 0, argparse errors 2
        return int(exc.code or 0)

    overrides: dict[str, dict[str, object]] = {"training": {}}
    if args.max_steps is not None:
        overrides["training"]["max_steps"] = args.max_steps
    if args.no_progress:
        overrides["training"]["progress"] = False
    try:
        config = load_train_config(args.config, overrides)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    return _train(config, args)


def _train(config: TrainConfig, args: argparse.Namespace) -> int:
    finished = False
    try:
        context = init_distributed(config.training.device)
        result, signum = _fit(config, args, context)
        finished = True
    except (AiprodError, OSError) as exc:
        return _fail(str(exc), EXIT_FAILED)
    except KeyboardInterrupt:  # before training started: there is nothing to save yet
        return _fail("interrupted before training started", EXIT_INTERRUPTED)
    finally:
        # The trainer (and its model) is gone by now; every process leaves together after
        # a run they all finished.
        shutdown_distributed(synchronize=finished)
    if context.is_main:
        print(_report(result, args))
    return EXIT_OK if signum is None else 128 + signum


def _fit(
    config: TrainConfig, args: argparse.Namespace, context: DistributedContext
) -> tuple[FitResult, int | None]:
    """Train; the result and the signal that stopped the run (None: it was not stopped)."""
    trainer = Trainer(config, resume=args.resume, context=context, threads=args.threads)
    if args.resume and trainer.start_step == 0 and context.is_main:
        print(f"no checkpoint in {trainer.run_dir}; starting from step 0", file=sys.stderr)
    result = trainer.fit(stop_at_step=args.stop_at_step)
    return result, trainer.stop_signal


def _report(result: FitResult, args: argparse.Namespace) -> str:
    if args.json:
        return json.dumps(
            {
                "run_dir": str(result.run_dir),
                "step": result.step,
                "completed": result.completed,
                "final_model": str(result.final_model) if result.final_model else None,
                "last_loss": result.losses[-1][1] if result.losses else None,
                "validation": [{"step": s, "loss": v} for s, v in result.validation],
            }
        )
    if result.completed:
        return f"trained to step {result.step}; final model: {result.final_model}"
    return (
        f"stopped at step {result.step}; checkpoint in {result.run_dir / 'checkpoints'} "
        f"(continue with: {PROG} {args.config} --resume)"
    )


def _fail(message: str, status: int) -> int:
    """Print ``error: <message>`` on stderr and return ``status``."""
    print(f"error: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
