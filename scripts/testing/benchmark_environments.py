# /// script
# requires-python = ">=3.11"
# dependencies = ["nox[uv]>=2026.8.10"]
# ///
"""Time `nox -s tests` cold, reused, cached and after a trainer-only change, against pytest.

Variants, each repeated and reported as a median, measured side by side in one run:
  env      `nox -s tests --install-only` with an empty envdir (environment creation alone)
  a        cold: `nox -s tests` with an empty envdir (and so an empty result cache)
  b        reuse: `nox -s tests` on the environments (a) left, result cache off
  c        pytest: the same pytest commands in one prepared venv holding everything
  d        pip: (a) with the virtualenv/pip backend instead of uv
  cached   `nox -s tests` again with nothing changed: every target from the result cache
  trainer  `nox -s tests` after a change to one trainer source file
  affected `nox -s affected -- --since HEAD` after such a change: only the trainer target
Everything runs on a private copy of the repository (its own git history, so `affected`
sees only the benchmark's change) with its own envdir, so the checkout and its .nox/ are
left alone. Prints a Markdown table (or --json) with the ratios b/c, d/a and the others/b.
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
from typing import TypedDict

from aiprod_dev import targets
from aiprod_dev.workspace import copy_checkout

VARIANTS = ("env", "a", "b", "c", "d", "cached", "trainer", "affected")
DESCRIPTIONS = {
    "env": "create the test environments (`nox -s tests --install-only`, empty envdir)",
    "a": "`nox -s tests`, empty envdir, warm uv cache",
    "b": "`nox -s tests`, environments reused, result cache off",
    "c": "plain pytest, same commands, one prepared venv",
    "d": "`nox -db virtualenv -s tests`, empty envdir (pip)",
    "cached": "`nox -s tests`, nothing changed (every target cached)",
    "trainer": "`nox -s tests` after a trainer-only change (trainer and tooling rerun)",
    "affected": "`nox -s affected` after a trainer-only change (only the trainer runs)",
}
#: The source file the trainer-only variants change (a comment line is appended).
TRAINER_FILE = Path("packages/aiprod-trainer/src/aiprod_trainer/__init__.py")
CACHE_OFF = {"NOX_RESULT_CACHE": "off"}

Runner = Callable[[Sequence[str], Path, Mapping[str, str]], float]


def run_timed(command: Sequence[str], cwd: Path, env: Mapping[str, str]) -> float:
    """Run ``command`` in ``cwd`` with ``env`` added; return its wall time, or raise."""
    start = time.perf_counter()
    result = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, check=False, env={**os.environ, **env}
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        lines = (result.stdout + result.stderr).splitlines()
        failures = [line for line in lines if line.startswith(("FAILED", "ERROR", "E "))]
        tail = "\n".join([*failures[:40], *lines[-20:]])
        raise RuntimeError(f"`{' '.join(command)}` failed ({result.returncode}):\n{tail}")
    return elapsed


def copy_repository(root: Path, target: Path) -> Path:
    """The files git knows in ``root`` (tracked and untracked, not ignored), as a new repo."""
    copy_checkout(root, target)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "copy"]):
        subprocess.run([*git, *args], cwd=target, check=True)
    return target


def pytest_commands(python: str, root: Path) -> list[tuple[list[str], dict[str, str]]]:
    """The pytest invocations (and environments) `nox -s tests` makes, for one shared venv."""
    commands = []
    for target in targets.TARGETS:
        run = targets.pytest_run(target, ["-q"], root)
        commands.append(([python, "-m", "pytest", *run.args], run.env))
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


def change_trainer(root: Path, round_id: str) -> None:
    """A trainer-only change: one more comment line in a trainer source file."""
    with (root / TRAINER_FILE).open("a", encoding="utf-8") as handle:
        handle.write(f"# benchmark change {round_id}\n")


def measure(
    variant: str, root: Path, work: Path, run: Runner, python: str | None, round_id: str = "0"
) -> float:
    """One timed run of ``variant`` in the repository copy ``root``."""
    envdir = work / ("envs-pip" if variant == "d" else "envs-uv")
    nox = [sys.executable, "-m", "nox", "--envdir", str(envdir), "--non-interactive"]
    if variant in {"env", "a", "d"}:
        shutil.rmtree(envdir, ignore_errors=True)
    if variant == "env":
        return run([*nox, "-s", "tests", "--install-only"], root, {})
    if variant == "a":
        return run([*nox, "-s", "tests"], root, {})
    if variant == "b":
        return run([*nox, "-s", "tests"], root, CACHE_OFF)
    if variant == "d":
        return run([*nox, "-db", "virtualenv", "-s", "tests"], root, CACHE_OFF)
    if variant == "cached":
        return run([*nox, "-s", "tests"], root, {})
    if variant in {"trainer", "affected"}:
        original = (root / TRAINER_FILE).read_bytes()
        change_trainer(root, f"{variant} {round_id}")
        try:
            if variant == "trainer":
                return run([*nox, "-s", "tests"], root, {})
            return run([*nox, "-s", "affected", "--", "--since", "HEAD"], root, {})
        finally:
            (root / TRAINER_FILE).write_bytes(original)
    if python is None:
        raise ValueError("variant c needs the prepared venv's python")
    total = 0.0
    for command, env in pytest_commands(python, root):
        total += run(command, root, {**env, "COVERAGE_FILE": str(work / ".coverage.shared")})
    return total


class Summary(TypedDict):
    """What :func:`summarize` returns (printed as JSON with ``--json``)."""

    samples: dict[str, list[float]]
    medians: dict[str, float]
    ratios: dict[str, float]


def summarize(samples: dict[str, list[float]]) -> Summary:
    """Medians per variant and the ratios the targets are stated in."""
    medians = {name: statistics.median(values) for name, values in samples.items()}
    ratios: dict[str, float] = {}
    if "b" in medians and "c" in medians:
        ratios["b/c"] = medians["b"] / medians["c"]
    if "d" in medians and "a" in medians:
        ratios["d/a"] = medians["d"] / medians["a"]
    for name in ("cached", "trainer", "affected"):
        if name in medians and "b" in medians:
            ratios[f"{name}/b"] = medians[name] / medians["b"]
    return {"samples": samples, "medians": medians, "ratios": ratios}


def markdown(summary: Summary) -> str:
    medians, samples = summary["medians"], summary["samples"]
    lines = ["| variant | what | median (s) | runs (s) |", "| --- | --- | ---: | --- |"]
    for name, value in medians.items():
        runs = ", ".join(f"{s:.1f}" for s in samples[name])
        lines.append(f"| {name} | {DESCRIPTIONS[name]} | {value:.1f} | {runs} |")
    for name, value in summary["ratios"].items():
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
        repo = copy_repository(args.root.resolve(), work / "repo")
        python = prepare_shared_venv(repo, work / "shared", uv) if "c" in variants else None
        try:
            for index in range(args.repeat):
                for name in variants:  # interleaved, so drift affects every variant alike
                    samples[name].append(measure(name, repo, work, run, python, str(index)))
                    print(f"{name}: {samples[name][-1]:.1f} s", file=sys.stderr)
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    summary = summarize(samples)
    print(json.dumps(summary, indent=2) if args.json else markdown(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
