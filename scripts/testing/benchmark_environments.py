# /// script
# requires-python = ">=3.11"
# dependencies = ["nox[uv]>=2025.2.9"]
# ///
"""Time `nox -s tests` cold, reused and with pip against plain pytest in one venv.

Variants, each repeated and reported as a median, measured side by side in one run:
  a  cold: `nox -s tests` with an empty envdir and a warm uv cache
  b  reuse: `nox -R -s tests` on the environments (a) left behind
  c  pytest: the same pytest commands in one prepared venv holding everything
  d  pip: (a) with the virtualenv/pip backend instead of uv
  env: `nox -s tests --install-only` with an empty envdir (environment creation alone)
Prints a Markdown table (or --json) with the ratios b/c and d/a. The benchmark uses its
own envdir under a temporary folder, so the repository's .nox/ is left alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

VARIANTS = ("env", "a", "b", "c", "d")
DESCRIPTIONS = {
    "env": "create the test environments (`nox -s tests --install-only`, empty envdir)",
    "a": "`nox -s tests`, empty envdir, warm uv cache",
    "b": "`nox -R -s tests`, environments reused",
    "c": "plain pytest, same commands, one prepared venv",
    "d": "`nox -db virtualenv -s tests`, empty envdir (pip)",
}
TARGETS = {"aiprod-core": 90, "aiprod-pipelines": 85, "aiprod-trainer": 85, "tooling": 85}

Runner = Callable[[Sequence[str], Path, Mapping[str, str]], float]


def run_timed(command: Sequence[str], cwd: Path, env: Mapping[str, str]) -> float:
    """Run ``command`` in ``cwd`` with ``env`` added; return its wall time, or raise."""
    start = time.perf_counter()
    result = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, check=False, env={**os.environ, **env}
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
        raise RuntimeError(f"`{' '.join(command)}` failed ({result.returncode}):\n{tail}")
    return elapsed


def pytest_commands(python: str, root: Path) -> list[list[str]]:
    """The pytest invocations `nox -s tests` makes, for one shared venv."""
    commands = []
    for target, minimum in TARGETS.items():
        if target == "tooling":
            paths, cov = [str(root / "tests")], "--cov=scripts"
        else:
            paths, cov = (
                [str(root / "packages" / target / "tests")],
                f"--cov={target.replace('-', '_')}",
            )
        commands.append(
            [python, "-m", "pytest", *paths, cov, "--cov-report=term-missing:skip-covered",
             f"--cov-fail-under={minimum}", "-q"]
        )  # fmt: skip
    return commands


def prepare_shared_venv(root: Path, venv: Path, uv: str) -> str:
    """One venv holding every package and every pinned third-party dependency."""
    subprocess.run([uv, "venv", "--quiet", "--clear", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    packages = sorted(
        str(p) for p in (root / "packages").iterdir() if (p / "pyproject.toml").is_file()
    )
    install = [uv, "pip", "install", "--quiet", "--python", python]
    subprocess.run([*install, "-r", str(root / "constraints.txt")], check=True)
    subprocess.run([*install, "--no-deps", *packages], check=True)
    return python


def measure(variant: str, root: Path, work: Path, run: Runner, python: str | None) -> float:
    """One timed run of ``variant``; cold variants start from an empty envdir."""
    envdir = work / ("envs-pip" if variant == "d" else "envs-uv")
    nox = [sys.executable, "-m", "nox", "--envdir", str(envdir), "--non-interactive"]
    if variant in {"env", "a", "d"}:
        shutil.rmtree(envdir, ignore_errors=True)
    if variant == "env":
        return run([*nox, "-s", "tests", "--install-only"], root, {})
    if variant == "a":
        return run([*nox, "-s", "tests"], root, {})
    if variant == "b":
        return run([*nox, "-R", "-s", "tests"], root, {})
    if variant == "d":
        return run([*nox, "-db", "virtualenv", "-s", "tests"], root, {})
    if python is None:
        raise ValueError("variant c needs the prepared venv's python")
    env = {"COVERAGE_FILE": str(work / ".coverage.shared")}
    return sum(run(command, root, env) for command in pytest_commands(python, root))


def summarize(samples: dict[str, list[float]]) -> dict[str, object]:
    """Medians per variant and the ratios the targets are stated in."""
    medians = {name: statistics.median(values) for name, values in samples.items()}
    ratios = {}
    if "b" in medians and "c" in medians:
        ratios["b/c"] = medians["b"] / medians["c"]
    if "d" in medians and "a" in medians:
        ratios["d/a"] = medians["d"] / medians["a"]
    return {"samples": samples, "medians": medians, "ratios": ratios}


def markdown(summary: dict[str, object]) -> str:
    medians: dict[str, float] = summary["medians"]  # type: ignore[assignment]
    samples: dict[str, list[float]] = summary["samples"]  # type: ignore[assignment]
    lines = ["| variant | what | median (s) | runs (s) |", "| --- | --- | ---: | --- |"]
    for name, value in medians.items():
        runs = ", ".join(f"{s:.1f}" for s in samples[name])
        lines.append(f"| {name} | {DESCRIPTIONS[name]} | {value:.1f} | {runs} |")
    for name, value in summary["ratios"].items():  # type: ignore[union-attr]
        lines.append(f"\n{name} = {value:.2f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, run: Runner = run_timed) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant (default 3)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="workspace root")
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or args.repeat < 1:
        print(f"error: variants must be among {', '.join(VARIANTS)} and --repeat >= 1; "
              f"got {', '.join(unknown) or args.repeat}", file=sys.stderr)  # fmt: skip
        return 2
    root = args.root.resolve()
    uv = shutil.which("uv")
    if uv is None:
        print(
            "error: uv not found on PATH; install it with `python3 -m pip install uv`",
            file=sys.stderr,
        )
        return 2
    samples: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory(prefix="aiprod-bench-") as tmp:
        work = Path(tmp)
        python = prepare_shared_venv(root, work / "shared", uv) if "c" in variants else None
        try:
            for _ in range(args.repeat):
                for name in variants:  # interleaved, so drift affects every variant alike
                    samples[name].append(measure(name, root, work, run, python))
                    print(f"{name}: {samples[name][-1]:.1f} s", file=sys.stderr)
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    summary = summarize(samples)
    print(json.dumps(summary, indent=2) if args.json else markdown(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
