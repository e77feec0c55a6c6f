"""The test-result cache: a target that passed on identical inputs is not run again.

The key of a run is a digest of everything that can change its result: the target's input
files (``targets.target_inputs``: its sources and tests, the installed workspace packages,
the lock, the shared pytest/coverage configuration), the pytest arguments, the Python
version and platform, and every distribution installed in its environment (torch's build
included). Only passing runs are stored, with their coverage data, under
``results/<target>/<key>/`` beside the environments (``.nox/results/`` by default); a hit
restores that coverage data so ``nox -s coverage`` still combines every target.
``nox -s clean -- --all`` removes the cache with ``.nox/``, and CI can save and restore the
folder between runs (the key holds no absolute path).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nox.command import CommandFailed

from aiprod_dev.environments import installed_distributions
from aiprod_dev.targets import COVERAGE_MINIMUM, PytestRun, target_inputs
from aiprod_dev.workspace import git_files

if TYPE_CHECKING:
    import nox

RESULTS_DIR = "results"  # inside nox's envdir
SCHEMA = "1"
#: Turns reading the cache off (runs are still stored): NOX_RESULT_CACHE=off.
SWITCH = "NOX_RESULT_CACHE"
#: How many passing runs to keep per target (older ones are pruned).
KEEP = 4
#: pytest's exit status when no test was collected (``pytest.ExitCode.NO_TESTS_COLLECTED``).
NO_TESTS_COLLECTED = 5
_WALK_SKIP = {"__pycache__", ".pytest_cache", ".hypothesis", ".mypy_cache", ".ruff_cache"}


def enabled(environ: Mapping[str, str]) -> bool:
    """Whether cached results may be used (``NOX_RESULT_CACHE`` not off/0/no/false)."""
    return environ.get(SWITCH, "on").strip().lower() not in {"off", "0", "no", "false"}


def input_files(root: Path, prefixes: Sequence[str]) -> list[str]:
    """The files under ``prefixes`` that git does not ignore, as sorted relative paths."""
    listed = git_files(root, prefixes)
    if listed is not None:
        return listed
    files = set()  # not a git checkout: walk, skipping tool caches and compiled files
    for prefix in prefixes:
        path = root / prefix
        candidates = path.rglob("*") if path.is_dir() else [path]
        for file in candidates:
            relative = file.relative_to(root)
            if file.is_file() and not _WALK_SKIP & set(relative.parts) and file.suffix != ".pyc":
                files.add(relative.as_posix())
    return sorted(files)


def python_identity(env_dir: Path) -> str:
    """The environment's Python version (from pyvenv.cfg) and the platform."""
    config = env_dir / "pyvenv.cfg"
    lines = config.read_text().splitlines() if config.is_file() else []
    version = sorted(line.replace(" ", "") for line in lines if line.startswith("version"))
    return f"{';'.join(version)};{platform.system()};{platform.machine()}"


def cache_key(
    root: Path, target: str, args: Sequence[str], env_dir: Path, prefixes: Sequence[str]
) -> str:
    """The digest of everything that decides a target's result."""
    digest = hashlib.sha256()

    def part(kind: str, value: str | bytes) -> None:
        data = value.encode() if isinstance(value, str) else value
        digest.update(f"{kind}\0{len(data)}\0".encode() + data)

    part("schema", SCHEMA)
    part("target", target)
    part("args", json.dumps([arg.replace(str(root), "<root>") for arg in args]))
    part("python", python_identity(env_dir))
    for name, version in sorted(installed_distributions(env_dir).items()):
        part("dist", f"{name}=={version}")
    for name in input_files(root, prefixes):
        path = root / name
        part("file", name)
        part("content", path.read_bytes() if path.is_file() else b"<missing>")
    return digest.hexdigest()


@dataclass(frozen=True)
class CachedRun:
    """A stored passing run."""

    folder: Path
    created: float
    seconds: float

    @property
    def coverage(self) -> Path:
        return self.folder / "coverage"

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.created))
        return f"identical inputs passed on {when} in {self.seconds:.1f} s"


def results_dir(env_dir: Path) -> Path:
    """The cache folder of the envdir that holds ``env_dir``."""
    return env_dir.parent / RESULTS_DIR


def lookup(cache: Path, target: str, key: str) -> CachedRun | None:
    """The stored passing run with this key, if any."""
    record = cache / target / key / "result.json"
    try:
        data = json.loads(record.read_text())
        return CachedRun(record.parent, float(data["created"]), float(data["seconds"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def store(cache: Path, target: str, key: str, seconds: float, coverage_file: Path) -> CachedRun:
    """Record a passing run (and its coverage data); older runs beyond ``KEEP`` are pruned."""
    base = cache / target
    staging = base / f".{key}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    if coverage_file.is_file():
        shutil.copy2(coverage_file, staging / "coverage")
    created = time.time()
    record = {"target": target, "key": key, "created": created, "seconds": seconds}
    (staging / "result.json").write_text(json.dumps(record, indent=2) + "\n")
    final = base / key
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    prune(base, keep=KEEP)
    return CachedRun(final, created, seconds)


def prune(base: Path, keep: int) -> list[Path]:
    """Remove all but the ``keep`` newest stored runs of one target; returns what went."""
    runs = [p for p in base.iterdir() if (p / "result.json").is_file()]
    runs.sort(key=lambda p: (p / "result.json").stat().st_mtime, reverse=True)
    removed = runs[keep:]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def restore(run: CachedRun, coverage_file: Path) -> bool:
    """Put a cached run's coverage data back where ``nox -s coverage`` reads it."""
    if not run.coverage.is_file():
        return False
    shutil.copy2(run.coverage, coverage_file)
    return True


def strip_force(posargs: Iterable[str]) -> tuple[list[str], bool]:
    """``posargs`` without ``--force``, and whether it was there."""
    args = list(posargs)
    return [a for a in args if a != "--force"], "--force" in args


def run_tests(session: nox.Session, target: str, run: PytestRun, root: Path, force: bool) -> None:
    """Run one target's pytest, or report its cached pass; store the run when it passes."""
    env_dir = Path(session.virtualenv.location)
    cache = results_dir(env_dir)
    coverage_file = Path(run.env["COVERAGE_FILE"])
    key = cache_key(root, target, run.args, env_dir, target_inputs(target, root))
    cached = lookup(cache, target, key)
    if cached is not None and not force and enabled(os.environ):
        restored = (
            "coverage data restored" if restore(cached, coverage_file) else "no coverage data"
        )
        session.log(f"cached: passed ({cached.describe()}; {restored})")
        session.log(f"  rerun anyway with `-- --force` or {SWITCH}=off")
        return
    if run.subset is not None:
        session.log(
            f"runs a subset ({run.subset}): coverage is reported, but the target's minimum "
            f"({COVERAGE_MINIMUM[target]}%) applies only to a full run"
        )
    started = time.monotonic()
    try:
        ran = session.run("pytest", *run.args, env=run.env)
    except CommandFailed as exc:
        if exc.return_code == NO_TESTS_COLLECTED:
            session.error(f"no tests matched `{' '.join(run.posargs)}` in {target}")
        raise
    if ran is not None:  # None: --install-only, nothing ran
        store(cache, target, key, time.monotonic() - started, coverage_file)
