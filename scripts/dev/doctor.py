# /// script
# requires-python = ">=3.11"
# dependencies = ["aiprod-core", "torch>=2.4"]
# ///
"""Check that this machine is ready to develop AIPROD: Python, torch, uv, nox, disk, models.

Each check prints one line marked ok, note, warn or FAIL, then a one-line verdict. Notes
(no CUDA device, model weights not downloaded yet) are information, not problems.
Exit status: 0 unless a check failed, then 1. ``--json`` prints the same for machines.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

MIN_PYTHON = (3, 11)
DISK_WARN_GIB = 10.0
DISK_FAIL_GIB = 2.0
VERSION_TIMEOUT_S = 10.0
INSTALL_HINT = 'python3 -m pip install --user uv && python3 -m uv tool install "nox[uv]>=2026.8.10"'
REPO_ROOT = Path(__file__).resolve().parents[2]

Status = Literal["ok", "note", "warn", "fail"]
LABELS: dict[str, str] = {"ok": "ok", "note": "note", "warn": "warn", "fail": "FAIL"}


@dataclass(frozen=True)
class CheckResult:
    """One line of the doctor's report."""

    name: str
    status: Status
    message: str


@dataclass(frozen=True)
class Probes:
    """How the checks look at the machine; tests replace any of these."""

    version_info: tuple[int, ...] = tuple(sys.version_info[:3])
    import_module: Callable[[str], Any] = importlib.import_module
    which: Callable[[str], str | None] = shutil.which
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run
    disk_usage: Callable[[Path], Any] = shutil.disk_usage
    load_config: Callable[[], Any] | None = None  # None: aiprod_core.config.load_config
    repo: Path = REPO_ROOT


def check_python(version_info: Sequence[int]) -> CheckResult:
    """Python must be at least MIN_PYTHON."""
    version = ".".join(str(part) for part in version_info[:3])
    if tuple(version_info[:2]) >= MIN_PYTHON:
        return CheckResult("python", "ok", f"Python {version}")
    wanted = ".".join(str(part) for part in MIN_PYTHON)
    return CheckResult("python", "fail", f"Python {version} is too old; AIPROD needs >= {wanted}")


def check_torch(import_module: Callable[[str], Any]) -> list[CheckResult]:
    """torch must import; a missing CUDA device is only a note."""
    try:
        with warnings.catch_warnings():
            # torch notes once that numpy is absent; this check does not need numpy.
            warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
            torch = import_module("torch")
    except ImportError as exc:
        return [
            CheckResult(
                "torch",
                "fail",
                f"torch is not installed ({exc}); run this script with "
                "`uv run scripts/dev/doctor.py` so its dependencies are installed",
            )
        ]
    results = [CheckResult("torch", "ok", f"torch {torch.__version__}")]
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        name = torch.cuda.get_device_name(0)
        message = f"CUDA {torch.version.cuda}, {count} device(s), first: {name}"
        results.append(CheckResult("cuda", "ok", message))
    else:
        build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
        message = f"no CUDA device (torch is {build}); gpu-marked tests and GPU sessions skip"
        results.append(CheckResult("cuda", "note", message))
    return results


def tool_version(
    path: str, run: Callable[..., subprocess.CompletedProcess[str]], timeout: float
) -> str:
    """The version ``<path> --version`` prints (stdout or stderr); raises on failure."""
    completed = run(
        [path, "--version"], capture_output=True, text=True, timeout=timeout, check=False
    )
    text = (completed.stdout or "") + (completed.stderr or "")
    if completed.returncode != 0:
        detail = text.strip().splitlines()[-1] if text.strip() else "no output"
        raise RuntimeError(f"exit status {completed.returncode}: {detail}")
    match = re.search(r"\d+(?:\.\d+)+\S*", text)
    if match is None:
        raise RuntimeError(f"no version number in its output {text.strip()!r}")
    return match.group(0)


def check_tool(
    name: str,
    which: Callable[[str], str | None],
    run: Callable[..., subprocess.CompletedProcess[str]],
    timeout: float = VERSION_TIMEOUT_S,
) -> CheckResult:
    """``name`` must be on PATH; its version is reported, or a warning if it will not say."""
    path = which(name)
    if path is None:
        return CheckResult(name, "fail", f"{name} not found on PATH; install: {INSTALL_HINT}")
    try:
        version = tool_version(path, run, timeout)
    except subprocess.TimeoutExpired:
        return CheckResult(name, "warn", f"{path} --version did not answer within {timeout:g} s")
    except (OSError, RuntimeError) as exc:
        return CheckResult(name, "warn", f"{path} --version failed: {exc}")
    return CheckResult(name, "ok", f"{name} {version} ({path})")


def check_disk(repo: Path, disk_usage: Callable[[Path], Any]) -> CheckResult:
    """Free space where the repository lives: warn under DISK_WARN_GIB, fail under DISK_FAIL_GIB."""
    try:
        free_gib = disk_usage(repo).free / 2**30
    except OSError as exc:
        return CheckResult("disk", "fail", f"cannot read free space at {repo}: {exc}")
    message = f"{free_gib:.1f} GiB free at {repo}"
    if free_gib < DISK_FAIL_GIB:
        return CheckResult("disk", "fail", f"{message}; need at least {DISK_FAIL_GIB:g} GiB")
    if free_gib < DISK_WARN_GIB:
        return CheckResult("disk", "warn", f"{message}; below {DISK_WARN_GIB:g} GiB")
    return CheckResult("disk", "ok", message)


def check_models(
    load_config: Callable[[], Any] | None,
    repo: Path,
    exists: Callable[[Path], bool] = Path.is_file,
) -> list[CheckResult]:
    """The configuration must load; missing registry model files are notes with a hint.

    Without ``load_config`` the configuration is found from ``repo`` (or $AIPROD_CONFIG_DIR).
    """
    try:
        from aiprod_core.config import ConfigError, find_config_dir
        from aiprod_core.config import load_config as load_from_dir
    except ImportError as exc:
        message = f"aiprod-core is not importable ({exc}); run `uv sync` in the repository"
        return [CheckResult("config", "fail", message)]
    try:
        config = load_config() if load_config else load_from_dir(find_config_dir(start=repo))
    except ConfigError as exc:
        return [CheckResult("config", "fail", str(exc))]
    results = [
        CheckResult("config", "ok", f"configuration loaded (env {config.env}, root {config.root})")
    ]
    if not config.models:
        results.append(CheckResult("models", "note", "the model registry is empty"))
    for name, entry in config.models.items():
        path = config.model_file(name)
        if exists(path):
            results.append(CheckResult(f"model {name}", "ok", f"present at {path}"))
        else:
            hint = f"; {entry.obtain}" if entry.obtain else ""
            message = f"not present: expected at {path}{hint}"
            results.append(CheckResult(f"model {name}", "note", message))
    return results


def collect_checks(probes: Probes) -> list[CheckResult]:
    """Every check, in the order they are printed."""
    return [
        check_python(probes.version_info),
        *check_torch(probes.import_module),
        check_tool("uv", probes.which, probes.run),
        check_tool("nox", probes.which, probes.run),
        check_disk(probes.repo, probes.disk_usage),
        *check_models(probes.load_config, probes.repo),
    ]


def verdict(results: Sequence[CheckResult]) -> str:
    """``ready``, ``ready with warnings`` or ``not ready: N problem(s)``."""
    failures = sum(result.status == "fail" for result in results)
    if failures:
        return f"not ready: {failures} problem{'s' if failures != 1 else ''}"
    if any(result.status == "warn" for result in results):
        return "ready with warnings"
    return "ready"


def format_table(results: Sequence[CheckResult]) -> str:
    """One line per check; continuation lines of long messages are indented under it."""
    width = max((len(result.name) for result in results), default=0)
    lines = []
    for result in results:
        first, *rest = result.message.splitlines() or [""]
        lines.append(f"{LABELS[result.status]:<4}  {result.name:<{width}}  {first}")
        lines.extend(" " * (width + 8) + line.strip() for line in rest)
    return "\n".join(lines)


def exit_code(results: Sequence[CheckResult]) -> int:
    return 1 if any(result.status == "fail" for result in results) else 0


PROBES = Probes()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    results = collect_checks(PROBES)
    summary = verdict(results)
    if args.json:
        payload = {
            "verdict": summary,
            "ready": exit_code(results) == 0,
            "checks": [asdict(result) for result in results],
        }
        print(json.dumps(payload, indent=2))
    else:
        print(format_table(results))
        print(summary)
    return exit_code(results)


if __name__ == "__main__":
    raise SystemExit(main())
