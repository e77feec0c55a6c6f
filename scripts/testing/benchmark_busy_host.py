# /// script
# requires-python = ">=3.11"
# dependencies = ["aiprod-trainer"]
# ///
"""Time the demo on an idle host and beside a CPU-bound process, side by side in one run.

Each variant runs ``scripts/dev/demo.py --retrain`` from scratch in its own temporary
folders, one after the other, and reports its wall time:

  idle        nothing else runs
  busy        a second process spins on one core for the whole run (``while True: pass``)
  busy-2      as busy, with two torch threads forced (``OMP_NUM_THREADS=2``: torch's
              default on two cores), to show what the thread policy avoids (--with-default)

The demo's own ``--threads`` (default ``auto``) picks the thread count in idle and busy.
The ratio busy / idle is the figure docs/PERFORMANCE.md quotes. Exit status: 0 when every
demo passed, 1 when one failed, 2 on bad arguments.

Examples:
    nox -s testing -- benchmark_busy_host
    nox -s testing -- benchmark_busy_host --quick --with-default --json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "scripts" / "dev" / "demo.py"
SPINNER = "while True:\n    pass\n"


@dataclass(frozen=True)
class Variant:
    name: str
    busy: bool
    env: dict[str, str]


@dataclass(frozen=True)
class Timing:
    """One demo run: its wall time, exit status, and the demo's own seconds per stage."""

    variant: str
    seconds: float
    exit_status: int
    stages: dict[str, float] = field(default_factory=dict)


def variants(with_default: bool) -> list[Variant]:
    """The variants to time, in the order they run."""
    chosen = [Variant("idle", False, {}), Variant("busy", True, {})]
    if with_default:
        chosen.append(Variant("busy-2", True, {"OMP_NUM_THREADS": "2"}))
    return chosen


@contextlib.contextmanager
def spinning(active: bool) -> Iterator[None]:
    """A CPU-bound process running for the duration of the block (when ``active``)."""
    if not active:
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", SPINNER])
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


def demo_command(folder: Path, quick: bool, threads: str) -> list[str]:
    command = [sys.executable, str(DEMO), "--retrain", "--json", "--threads", threads]
    command += ["--output", str(folder / "out"), "--workdir", str(folder / "work")]
    return [*command, "--quick"] if quick else command


def run_variant(variant: Variant, quick: bool, threads: str) -> Timing:
    """Run the demo once under ``variant``; its wall time and exit status."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env.update(variant.env)
    with tempfile.TemporaryDirectory(prefix=f"busy-host-{variant.name}-") as folder:
        command = demo_command(Path(folder), quick, threads)
        log = Path(folder) / "demo.log"
        with spinning(variant.busy), log.open("w") as stream:
            started = time.perf_counter()
            done = subprocess.run(
                command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stream, check=False
            )
            seconds = time.perf_counter() - started
        if done.returncode != 0:
            tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-20:]
            print(f"the {variant.name} demo failed:\n  " + "\n  ".join(tail), file=sys.stderr)
    return Timing(variant.name, seconds, done.returncode, stage_seconds(done.stdout))


def stage_seconds(report: bytes) -> dict[str, float]:
    """The demo's seconds per stage, from its ``--json`` report (empty when it has none)."""
    try:
        stages = json.loads(report)["stages"]
        return {str(stage["name"]): float(stage["seconds"]) for stage in stages}
    except (ValueError, KeyError, TypeError):
        return {}


def render(timings: Sequence[Timing]) -> str:
    idle = next((t.seconds for t in timings if t.variant == "idle"), None)
    lines = [f"{'variant':<10}{'seconds':>10}{'x idle':>9}{'exit':>6}  stages (s)"]
    for timing in timings:
        ratio = f"{timing.seconds / idle:.2f}" if idle else "-"
        stages = ", ".join(f"{name} {value:.1f}" for name, value in timing.stages.items())
        lines.append(
            f"{timing.variant:<10}{timing.seconds:>10.1f}{ratio:>9}{timing.exit_status:>6}  "
            f"{stages}"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n", 1)[0],
        epilog="Exit status: 0 every demo passed, 1 one failed, 2 bad arguments.",
    )
    parser.add_argument("--quick", action="store_true", help="time the demo's --quick profile")
    parser.add_argument(
        "--with-default",
        action="store_true",
        help="also time the busy host with two torch threads forced (slow: the full demo "
        "then takes well over half an hour)",
    )
    parser.add_argument(
        "--threads",
        default="auto",
        metavar="N|auto",
        help="the demo's --threads in the idle and busy variants (default: auto)",
    )
    parser.add_argument("--json", action="store_true", help="print the timings as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    timings = []
    for variant in variants(args.with_default):
        print(f"running the demo: {variant.name} ...", file=sys.stderr, flush=True)
        timings.append(run_variant(variant, args.quick, args.threads))
    if args.json:
        print(json.dumps([asdict(t) for t in timings], indent=2))
    else:
        print(render(timings))
    return 0 if all(t.exit_status == 0 for t in timings) else 1


if __name__ == "__main__":
    raise SystemExit(main())
