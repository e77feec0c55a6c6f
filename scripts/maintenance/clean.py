# /// script
# requires-python = ">=3.11"
# dependencies = []
# ///
"""Remove what tools generate (caches, coverage data, build outputs) from the repository.

Removed: ``__pycache__/``, ``*.pyc``/``*.pyo``, ``.pytest_cache/``, ``.mypy_cache/``,
``.ruff_cache/``, ``.hypothesis/``, ``.coverage`` and ``.coverage.*``, ``htmlcov/``,
``coverage.xml``, ``build/``, ``dist/`` and ``*.egg-info``; with ``--all`` also ``.nox/``.
Also the temporary files and folders a process killed in the middle of an atomic write
leaves (``.NAME.<12 hex digits>.tmp`` with an optional suffix such as ``.old``; see
``aiprod_core.atomic``), once nothing in them has changed for an hour: one that changed more
recently may still be being written, and is reported as kept.
Each removed path is printed relative to the repository root, followed by the total freed
(``freed 1.2 MiB in 14 paths``). ``--dry-run`` only lists what would go.

Sizes are apparent sizes (``lstat``) and, like ``du``, count a file with several hard links
once: each (device, inode) adds its size a single time to a path's bytes and to the total,
however many links the candidates hold (uv links the files of every ``.nox`` environment
to the same copies in its cache). The total can therefore be less than the sum of the
paths' bytes.

Safety rules:

- A git-tracked file is never removed. A generated-looking candidate that *is* or *contains*
  a tracked path (a tracked ``build/keep.txt``) is kept whole and reported as kept; the walk
  still enters it, so untracked generated content nested inside (``build/x/__pycache__``)
  may go.
- The top-level ``models/`` folder, ``.git`` and ``.env``/``.env.*`` are never touched or
  entered; a candidate containing a ``.env`` or a ``.git`` is kept. A directory holding a
  ``.git`` entry (nested repository, submodule, worktree) is never entered.
- Symbolic links are neither removed nor followed: a link with a generated name is reported
  as kept, and the walk never descends through a linked directory.
- Installed environments are never entered: virtual environments (any directory with a
  ``pyvenv.cfg``), ``node_modules`` and, without ``--all``, ``.nox``. Their packages may
  legitimately contain folders named ``build`` or ``dist``.
- Just before removal every candidate is checked again: not a link, resolving inside the
  repository root, not under ``.git`` or ``models/``.

Untracked files inside a candidate folder (``dist/`` holding an untracked wheel) are
removed with it: that is what the folder is for.

Exit status: 0 on success, 1 when some path could not be read or removed (each is reported
and the rest is still cleaned), 2 for a bad ``--root`` or when git is not available.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

GENERATED_DIRS = frozenset(
    {
        "__pycache__",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        ".hypothesis",
        "htmlcov",
        "build",
        "dist",
    }
)
GENERATED_FILES = frozenset({".coverage", "coverage.xml"})
GENERATED_FILE_SUFFIXES = (".pyc", ".pyo")
EGG_INFO_SUFFIX = ".egg-info"
#: The temporary names of ``aiprod_core.atomic.temporary_sibling``: this script runs
#: without the project installed, so it keeps a copy of ``aiprod_core.atomic.TEMPORARY_NAME``
#: (its tests check that the two are the same).
TEMPORARY_NAME = re.compile(
    r"\.(?P<target>.+)\.(?P<token>[0-9a-f]{12})\.tmp(?P<suffix>(?:\..*)?)", re.DOTALL
)
#: A temporary file or folder is removed only when nothing in it changed for this long.
ORPHAN_MIN_AGE_S = 3600
NOX_DIR = ".nox"
MODELS_DIR = "models"
ENVIRONMENT_DIRS = frozenset({"node_modules"})
# Variables that would point git at another repository than the one given by --root.
GIT_LOCATION_VARIABLES = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_NAMESPACE",
)


class CleanError(Exception):
    """A problem the user can fix (bad --root, git missing); reported as one line."""


@dataclass(frozen=True)
class TrackedPaths:
    """Paths git tracks, relative to the root with ``/`` separators, and their parent dirs."""

    files: frozenset[str]
    dirs: frozenset[str]

    @classmethod
    def from_files(cls, files: Sequence[str]) -> TrackedPaths:
        dirs: set[str] = set()
        for name in files:
            parts = name.split("/")
            dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
        return cls(frozenset(files), frozenset(dirs))


#: A file's identity: (st_dev, st_ino). Hard links to one file share it.
FileId = tuple[int, int]


@dataclass(frozen=True)
class Candidate:
    """A generated path that may be removed."""

    path: str  # relative to the root, "/"-separated
    kind: str  # "directory" or "file"
    bytes: int  # each file (device, inode) counted once
    # The files among ``bytes`` that have more than one hard link, with their sizes, so that
    # a file linked from several candidates is counted once in the total. Not in the JSON.
    linked: Mapping[FileId, int] = field(default_factory=dict, compare=False, repr=False)

    def as_dict(self) -> dict[str, str | int]:
        return {"path": self.path, "kind": self.kind, "bytes": self.bytes}


@dataclass(frozen=True)
class Kept:
    """A generated-looking path left in place, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class Failure:
    """A path that could not be read or removed."""

    path: str
    error: str


@dataclass
class Report:
    """What a scan found and, after :func:`remove_all`, what happened."""

    candidates: list[Candidate] = field(default_factory=list)
    kept: list[Kept] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        """Bytes of the candidates, each (device, inode) counted once across all of them."""
        single = sum(c.bytes - sum(c.linked.values()) for c in self.candidates)
        shared: dict[FileId, int] = {}
        for candidate in self.candidates:
            shared.update(candidate.linked)
        return single + sum(shared.values())


def human_size(size: int) -> str:
    """Format a byte count with binary units: ``512 B``, ``1.5 KiB``, ``1.2 MiB``."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if round(value, 1) < 1024:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} PiB"


def _git_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key not in GIT_LOCATION_VARIABLES}


def _git(args: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, env=_git_env(), check=False
        )
    except FileNotFoundError as exc:
        raise CleanError(
            "git is not installed or not on PATH; it is needed to find tracked files"
        ) from exc


def resolve_root(root: str | None) -> Path:
    """Return the repository's top level: ``root`` itself, or the one holding the cwd."""
    start = Path.cwd() if root is None else Path(root)
    if root is not None and not start.is_dir():
        raise CleanError(f"--root {root}: not a directory")
    result = _git(["rev-parse", "--show-toplevel"], start)
    if result.returncode != 0:
        detail = os.fsdecode(result.stderr).strip().splitlines()
        reason = detail[-1] if detail else "git rev-parse --show-toplevel failed"
        where = f"--root {root}" if root is not None else f"current directory {start}"
        hint = "" if root is not None else "; pass --root PATH"
        raise CleanError(f"{where}: not inside a git repository ({reason}){hint}")
    top = Path(os.fsdecode(result.stdout.rstrip(b"\n"))).resolve()
    if root is not None and start.resolve() != top:
        raise CleanError(f"--root {root}: not the top level of a git repository (that is {top})")
    return top


def tracked_paths(root: Path) -> TrackedPaths:
    """Every path in git's index for the repository at ``root`` (``git ls-files -z``)."""
    result = _git(["ls-files", "-z"], root)
    if result.returncode != 0:
        raise CleanError(f"{root}: git ls-files failed: {os.fsdecode(result.stderr).strip()}")
    names = [os.fsdecode(name) for name in result.stdout.split(b"\0") if name]
    return TrackedPaths.from_files(names)


def is_protected_name(name: str) -> bool:
    """``.git`` and ``.env``/``.env.*`` are never removed or entered."""
    return name in {".git", ".env"} or name.startswith(".env.")


def is_orphan_name(name: str) -> bool:
    """Whether ``name`` is that of an atomic write's temporary file or folder."""
    return TEMPORARY_NAME.fullmatch(name) is not None


def is_generated(name: str, *, is_dir: bool, include_nox: bool) -> bool:
    """Whether an entry with this name and kind is tool output (or an unfinished write's)."""
    if name.endswith(EGG_INFO_SUFFIX) or is_orphan_name(name):
        return True
    if is_dir:
        return name in GENERATED_DIRS or (include_nox and name == NOX_DIR)
    return (
        name in GENERATED_FILES
        or name.startswith(".coverage.")
        or name.endswith(GENERATED_FILE_SUFFIXES)
    )


def _looks_generated(name: str, *, include_nox: bool) -> bool:
    """Whether a name is generated for a directory or for a file (used for links)."""
    return is_generated(name, is_dir=True, include_nox=include_nox) or is_generated(
        name, is_dir=False, include_nox=include_nox
    )


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _is_boundary(path: Path, name: str, *, include_nox: bool) -> bool:
    """Directories the walk never enters: environments and nested repositories."""
    if name in ENVIRONMENT_DIRS or (name == NOX_DIR and not include_nox):
        return True
    return os.path.lexists(path / "pyvenv.cfg") or os.path.lexists(path / ".git")


class _Sizes:
    """Adds up lstat sizes, counting each (device, inode) with several links once.

    Also keeps the newest modification time of what it was shown (see :meth:`touch`).
    """

    def __init__(self) -> None:
        self.single = 0
        self.linked: dict[FileId, int] = {}
        self.newest = 0.0

    def touch(self, info: os.stat_result) -> None:
        """Note a modification time (of a folder, whose size is not counted)."""
        self.newest = max(self.newest, info.st_mtime)

    def add(self, info: os.stat_result) -> None:
        self.touch(info)
        if info.st_nlink > 1:
            self.linked[(info.st_dev, info.st_ino)] = info.st_size
        else:
            self.single += info.st_size

    @property
    def total(self) -> int:
        return self.single + sum(self.linked.values())


def _measure(directory: Path, root: Path) -> tuple[_Sizes, str | None, Failure | None]:
    """The lstat sizes of the files under ``directory`` (links are not followed).

    Also returns why the directory must be kept (it holds a ``.git`` or ``.env``), and a
    failure when part of it could not be read (it is then kept: its content is unknown).
    """
    sizes = _Sizes()
    stack = [directory]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                found = list(entries)
        except OSError as exc:
            return sizes, None, Failure(_relative(current, root), f"could not read: {exc.strerror}")
        for entry in found:
            if is_protected_name(entry.name):
                return sizes, f"contains {_relative(Path(entry.path), root)}", None
            if entry.is_dir(follow_symlinks=False):
                sizes.touch(entry.stat(follow_symlinks=False))
                stack.append(Path(entry.path))
            else:
                sizes.add(entry.stat(follow_symlinks=False))
    return sizes, None, None


def _consider(
    entry: os.DirEntry[str],
    rel: str,
    *,
    is_dir: bool,
    root: Path,
    tracked: TrackedPaths,
    report: Report,
    orphans_before: float,
) -> bool:
    """Record a generated-looking entry as candidate, kept or failed; True when kept.

    An unfinished write's temporary file or folder in which anything was modified at or
    after ``orphans_before`` (a time) is kept: it may still be being written.
    """
    if rel in tracked.files:
        report.kept.append(Kept(rel, "tracked by git"))
        return True
    if is_dir and rel in tracked.dirs:
        report.kept.append(Kept(rel, "contains tracked files"))
        return True
    reason: str | None = None
    if is_dir:
        sizes, reason, failure = _measure(Path(entry.path), root)
        if failure is not None:
            report.failed.append(failure)
            return False
        sizes.touch(entry.stat(follow_symlinks=False))
    else:
        sizes = _Sizes()
        sizes.add(entry.stat(follow_symlinks=False))
    kind = "directory" if is_dir else "file"
    if reason is None and is_orphan_name(entry.name) and sizes.newest >= orphans_before:
        reason = _recent_write(kind, sizes.newest, orphans_before)
    if reason is not None:
        report.kept.append(Kept(rel, reason))
        return True
    report.candidates.append(Candidate(rel, kind, sizes.total, sizes.linked))
    return False


def _recent_write(kind: str, modified: float, orphans_before: float) -> str:
    minutes = max(0, round((orphans_before + ORPHAN_MIN_AGE_S - modified) / 60))
    return (
        f"temporary {kind} of an unfinished write, modified {minutes} min ago: it may still "
        f"be being written; it goes once unchanged for {ORPHAN_MIN_AGE_S // 60} min"
    )


def scan(
    root: Path, tracked: TrackedPaths, *, include_nox: bool = False, now: float | None = None
) -> Report:
    """Find generated paths under ``root`` without following links or entering protected dirs.

    ``now`` (default: the current time) decides which unfinished writes' temporary files
    are old enough to go (see :data:`ORPHAN_MIN_AGE_S`).
    """
    orphans_before = (time.time() if now is None else now) - ORPHAN_MIN_AGE_S
    report = Report()
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as exc:
            report.failed.append(
                Failure(_relative(directory, root), f"could not read: {exc.strerror}")
            )
            continue
        subdirs: list[Path] = []
        for entry in entries:
            path = Path(entry.path)
            rel = _relative(path, root)
            if is_protected_name(entry.name) or rel == MODELS_DIR:
                continue
            if entry.is_symlink():
                if _looks_generated(entry.name, include_nox=include_nox):
                    report.kept.append(Kept(rel, "symbolic link (links are never removed)"))
                continue
            is_dir = entry.is_dir(follow_symlinks=False)
            if is_generated(entry.name, is_dir=is_dir, include_nox=include_nox):
                kept = _consider(
                    entry,
                    rel,
                    is_dir=is_dir,
                    root=root,
                    tracked=tracked,
                    report=report,
                    orphans_before=orphans_before,
                )
                # A kept directory is still walked: generated content nested in it may go.
                if not (is_dir and kept):
                    continue
            if is_dir and not _is_boundary(path, entry.name, include_nox=include_nox):
                subdirs.append(path)
        stack.extend(reversed(subdirs))
    report.candidates.sort(key=lambda candidate: candidate.path)
    report.kept.sort(key=lambda kept: kept.path)
    return report


def refusal_reason(path: Path, root: Path) -> str | None:
    """Why ``path`` must not be removed right now, or None when removing it is safe.

    Checked again just before removal, so that a path swapped for a link after the scan,
    or one that escapes the root, is refused.
    """
    if path.is_symlink():
        return "it is a symbolic link"
    real = Path(os.path.realpath(path))
    if real == root or not real.is_relative_to(root):
        return f"it is not inside the repository (it resolves to {real})"
    parts = real.relative_to(root).parts
    if parts[0] == MODELS_DIR or any(is_protected_name(part) for part in parts):
        return "it is a protected path (models/, .git, .env)"
    return None


def _describe(exc: OSError, root: Path) -> str:
    message = exc.strerror or str(exc)
    if exc.filename is None:
        return message
    name = Path(os.fsdecode(exc.filename))
    shown = _relative(name, root) if name.is_absolute() and name.is_relative_to(root) else name
    return f"{shown}: {message}"


def remove_all(report: Report, root: Path) -> Report:
    """Remove every candidate; those that cannot be removed move to ``failed``."""
    result = Report(kept=list(report.kept), failed=list(report.failed))
    for candidate in report.candidates:
        path = root / candidate.path
        refusal = refusal_reason(path, root)
        if refusal is not None:
            result.failed.append(Failure(candidate.path, f"refused: {refusal}"))
            continue
        try:
            if candidate.kind == "directory":
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError as exc:
            result.failed.append(Failure(candidate.path, _describe(exc, root)))
            continue
        result.candidates.append(candidate)
    return result


def _shown(candidate: Candidate) -> str:
    return candidate.path + "/" if candidate.kind == "directory" else candidate.path


def summary(report: Report, *, dry_run: bool) -> str:
    """``freed 1.2 MiB in 14 paths`` (``would free ...`` for a dry run)."""
    count = len(report.candidates)
    verb = "would free" if dry_run else "freed"
    noun = "path" if count == 1 else "paths"
    return f"{verb} {human_size(report.total_bytes)} in {count} {noun}"


def print_text(report: Report, *, dry_run: bool) -> None:
    """Human-readable listing on stdout; failures on stderr."""
    action = "would remove" if dry_run else "removed"
    for candidate in report.candidates:
        print(f"{action} {_shown(candidate)}")
    for kept in report.kept:
        print(f"kept {kept.path} ({kept.reason})")
    for failure in report.failed:
        print(f"error: {failure.path}: {failure.error}", file=sys.stderr)
    print(summary(report, dry_run=dry_run))


def print_json(report: Report, root: Path, *, dry_run: bool) -> None:
    """Machine-readable result on stdout."""
    document = {
        "root": str(root),
        "dry_run": dry_run,
        "paths": [candidate.as_dict() for candidate in report.candidates],
        "kept": [asdict(kept) for kept in report.kept],
        "failed": [asdict(failure) for failure in report.failed],
        "total_bytes": report.total_bytes,
        "summary": summary(report, dry_run=dry_run),
    }
    print(json.dumps(document, indent=2))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clean.py",
        description=(__doc__ or "").partition("\n")[0],
    )
    parser.add_argument(
        "--root",
        metavar="PATH",
        help="top level of the git repository to clean (default: the one holding the cwd)",
    )
    parser.add_argument(
        "-n", "--dry-run", action="store_true", help="list what would be removed; remove nothing"
    )
    parser.add_argument("--all", action="store_true", help="also remove .nox/ environments")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        root = resolve_root(args.root)
        tracked = tracked_paths(root)
    except CleanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = scan(root, tracked, include_nox=args.all)
    if not args.dry_run:
        report = remove_all(report, root)
    if args.json:
        print_json(report, root, dry_run=args.dry_run)
    else:
        print_text(report, dry_run=args.dry_run)
    return 1 if report.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
