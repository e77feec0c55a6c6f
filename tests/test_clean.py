"""Tests of scripts/maintenance/clean.py on throw-away git repositories."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from aiprod_core import atomic

SCRIPT = "maintenance/clean.py"


@pytest.fixture(scope="module")
def clean(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script(SCRIPT)


@pytest.fixture(autouse=True)
def _isolated_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep git from reading the user's config or finding a repository above tmp_path."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(name, raising=False)


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        [
            "git",
            "-c",
            "user.email=tests@example.com",
            "-c",
            "user.name=Tests",
            "-c",
            "commit.gpgsign=false",
            *args,
        ],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout


def write(root: Path, relative: str, size: int = 10) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


def make_repo(path: Path, tracked: dict[str, int] | None = None) -> Path:
    """A git repository at ``path`` with ``tracked`` files (name -> size) committed."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q")
    files = {"README.md": 20, "src/app.py": 30, **(tracked or {})}
    for name, size in files.items():
        write(path, name, size)
    git(path, "add", "-f", "--", *files)
    git(path, "commit", "-q", "-m", "initial")
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


def tree(root: Path) -> set[str]:
    """Every path under ``root`` (without following links), relative, ``.git`` excluded."""
    found: set[str] = set()
    for current, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = [name for name in dirs if not (current == str(root) and name == ".git")]
        for name in dirs + files:
            found.add(Path(current, name).relative_to(root).as_posix())
    return found


def run_json(clean: ModuleType, capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    code = clean.main([*args, "--json"])
    document = json.loads(capsys.readouterr().out)
    document["exit_code"] = code
    return document


GENERATED = {
    "pkg/__pycache__/mod.cpython-311.pyc": 100,
    "pkg/old.pyc": 7,
    "pkg/old.pyo": 8,
    ".pytest_cache/v/cache/lastfailed": 11,
    ".mypy_cache/3.11/x.json": 12,
    ".ruff_cache/0.1/y": 13,
    ".hypothesis/examples/z": 14,
    ".coverage": 15,
    ".coverage.host.1234.XyZ": 16,
    "htmlcov/index.html": 17,
    "coverage.xml": 18,
    "build/lib/pkg/mod.py": 19,
    "dist/pkg-1.0-py3-none-any.whl": 20,
    "src/pkg.egg-info/PKG-INFO": 21,
}
REMOVED_PATHS = [
    ".coverage",
    ".coverage.host.1234.XyZ",
    ".hypothesis",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    "build",
    "coverage.xml",
    "dist",
    "htmlcov",
    "pkg/__pycache__",
    "pkg/old.pyc",
    "pkg/old.pyo",
    "src/pkg.egg-info",
]
LOOKALIKES = {
    ".coveragerc": 5,
    "pkg/mod.py": 5,
    "docs/build.md": 5,
    "notes/dist": 5,  # a file called dist, not a directory
    "coverage.xml.bak": 5,
}


def test_removes_every_generated_kind_and_nothing_else(
    clean: ModuleType, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, size in {**GENERATED, **LOOKALIKES}.items():
        write(repo, name, size)
    before = tree(repo)

    code = clean.main(["--root", str(repo)])

    out = capsys.readouterr().out.splitlines()
    assert code == 0
    after = tree(repo)
    for name in REMOVED_PATHS:
        assert not (repo / name).exists(), name
    assert {"README.md", "src/app.py", *LOOKALIKES} <= after
    removed = before - after
    assert all(any(p == r or p.startswith(r + "/") for r in REMOVED_PATHS) for p in removed)
    files = {".coverage", ".coverage.host.1234.XyZ", "coverage.xml", "pkg/old.pyc", "pkg/old.pyo"}
    expected_lines = [
        f"removed {name}" if name in files else f"removed {name}/" for name in REMOVED_PATHS
    ]
    assert out[:-1] == expected_lines
    assert out[-1] == f"freed {sum(GENERATED.values())} B in {len(REMOVED_PATHS)} paths"


def test_freed_total_is_human_readable(
    clean: ModuleType, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(repo, "build/a.bin", 1024 * 1024)
    write(repo, "pkg/__pycache__/m.pyc", 200 * 1024)

    assert clean.main(["--root", str(repo)]) == 0

    assert capsys.readouterr().out.splitlines() == [
        "removed build/",
        "removed pkg/__pycache__/",
        "freed 1.2 MiB in 2 paths",
    ]


def test_byte_totals_count_file_sizes_exactly(
    clean: ModuleType, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(repo, "build/a", 100)
    write(repo, "build/deep/er/b", 200)
    write(repo, "build/empty_dir/.keep", 0)
    write(repo, ".coverage", 3000)
    (repo / "build" / "link").symlink_to("a")  # counted by lstat: the length of "a"

    document = run_json(clean, capsys, "--root", str(repo))

    assert document["exit_code"] == 0
    assert document["paths"] == [
        {"path": ".coverage", "kind": "file", "bytes": 3000},
        {"path": "build", "kind": "directory", "bytes": 301},
    ]
    assert document["total_bytes"] == 3301
    assert document["summary"] == "freed 3.2 KiB in 2 paths"
    assert document["root"] == str(repo.resolve())
    assert document["dry_run"] is False
    assert document["kept"] == []
    assert document["failed"] == []


def test_dry_run_removes_nothing_and_lists_the_same_paths(
    clean: ModuleType, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, size in GENERATED.items():
        write(repo, name, size)
    before = tree(repo)

    dry = run_json(clean, capsys, "--root", str(repo), "--dry-run")
    assert tree(repo) == before
    assert clean.main(["--root", str(repo), "-n"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert tree(repo) == before

    real = run_json(clean, capsys, "--root", str(repo))

    assert dry["exit_code"] == real["exit_code"] == 0
    assert dry["dry_run"] is True
    assert [p["path"] for p in dry["paths"]] == REMOVED_PATHS
    assert dry["paths"] == real["paths"]
    assert dry["total_bytes"] == real["total_bytes"] == sum(GENERATED.values())
    assert dry["summary"].startswith("would free ")
    assert real["summary"].startswith("freed ")
    assert [line.removeprefix("would remove ").rstrip("/") for line in text[:-1]] == REMOVED_PATHS
    assert text[-1] == f"would free {sum(GENERATED.values())} B in {len(REMOVED_PATHS)} paths"


def test_nox_is_removed_only_with_all(
    clean: ModuleType, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(repo, ".nox/tests/pyvenv.cfg", 5)
    write(repo, ".nox/tests/lib/site-packages/build/__init__.py", 6)
    write(repo, ".nox/tests/lib/site-packages/pkg/__pycache__/x.pyc", 7)

    plain = run_json(clean, capsys, "--root", str(repo))
    assert plain["paths"] == []
    assert (repo / ".nox/tests/lib/site-packages/build/__init__.py").exists()
    assert (repo / ".nox/tests/lib/site-packages/pkg/__pycache__/x.pyc").exists()

    everything = run_json(clean, capsys, "--root", str(repo), "--all")

    assert everything["exit_code"] == 0
    assert everything["paths"] == [{"path": ".nox", "kind": "directory", "bytes": 18}]
    assert not (repo / ".nox").exists()


def test_hard_links_count_each_inode_once(
    clean: ModuleType, repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # As uv does: one file in its cache, outside the repository, hard-linked into every
    # .nox environment; and one file linked from three separate candidates.
    cached = write(tmp_path, "uv-cache/torch/lib.so", 5000)
    for env in ("tests", "lint"):
        write(repo, f".nox/{env}/pyvenv.cfg", 10)
        linked = repo / f".nox/{env}/lib/torch/lib.so"
        linked.parent.mkdir(parents=True)
        os.link(cached, linked)
    shared = write(repo, "build/shared.bin", 700)
    os.link(shared, repo / "build" / "again.bin")  # twice inside one candidate
    (repo / "dist").mkdir()
    os.link(shared, repo / "dist" / "shared.bin")
    os.link(shared, repo / ".coverage.linked")
    write(repo, "dist/own.whl", 3)
    assert shared.stat().st_nlink == 4
    expected_total = 5000 + 2 * 10 + 700 + 3

    dry = run_json(clean, capsys, "--root", str(repo), "--all", "--dry-run")
    assert clean.main(["--root", str(repo), "--all", "-n"]) == 0
    text = capsys.readouterr().out.splitlines()
    real = run_json(clean, capsys, "--root", str(repo), "--all")

    each_once = [
        {"path": ".coverage.linked", "kind": "file", "bytes": 700},
        {"path": ".nox", "kind": "directory", "bytes": 5000 + 2 * 10},
        {"path": "build", "kind": "directory", "bytes": 700},
        {"path": "dist", "kind": "directory", "bytes": 703},
    ]
    assert dry["paths"] == real["paths"] == each_once
    assert dry["total_bytes"] == real["total_bytes"] == expected_total
    assert text[-1] == f"would free {clean.human_size(expected_total)} in 4 paths"
    assert real["summary"] == f"freed {clean.human_size(expected_total)} in 4 paths"
    assert real["exit_code"] == 0
    for name in (".nox", "build", "dist", ".coverage.linked"):
        assert not (repo / name).exists(), name
    assert cached.read_bytes() == b"x" * 5000
    assert cached.stat().st_nlink == 1


def test_total_counts_only_the_candidates_that_were_removed(clean: ModuleType) -> None:
    shared = {(1, 42): 700}
    one = clean.Candidate("build", "directory", 710, shared)
    two = clean.Candidate("dist", "directory", 703, shared)
    alone = clean.Candidate(".coverage", "file", 5)

    assert clean.Report(candidates=[one, two, alone]).total_bytes == 10 + 3 + 700 + 5
    assert clean.Report(candidates=[two]).total_bytes == 703
    assert clean.Report().total_bytes == 0


def test_environments_and_nested_repositories_are_not_entered(
    clean: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path / "repo")
    protected = [
        ".venv/pyvenv.cfg",
        ".venv/lib/python3.11/site-packages/build/__init__.py",
        ".venv/lib/python3.11/site-packages/dist/__pycache__/a.pyc",
        "web/node_modules/pkg/dist/index.js",
    ]
    for name in protected:
        write(repo, name)
    nested = make_repo(repo / "vendor" / "lib")
    write(nested, "build/out.o")
    write(nested, "__pycache__/n.pyc")

    document = run_json(clean, capsys, "--root", str(repo))

    assert document["paths"] == []
    for name in protected:
        assert (repo / name).exists(), name
    assert (nested / "build/out.o").exists()
    assert (nested / "__pycache__/n.pyc").exists()


def test_tracked_paths_are_never_removed(
    clean: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(
        tmp_path / "repo",
        {
            "build/keep.txt": 4,
            "dist/README.md": 5,
            "legacy/vendored.pyc": 6,
            "dir é with space/build/keep.txt": 7,
        },
    )
    write(repo, "build/untracked.o", 8)
    write(repo, "build/sub/__pycache__/x.pyc", 9)
    write(repo, "dist/pkg.whl", 10)
    write(repo, "dir é with space/build/out.o", 11)

    document = run_json(clean, capsys, "--root", str(repo))

    assert document["exit_code"] == 0
    assert document["paths"] == [{"path": "build/sub/__pycache__", "kind": "directory", "bytes": 9}]
    assert document["kept"] == [
        {"path": "build", "reason": "contains tracked files"},
        {"path": "dir é with space/build", "reason": "contains tracked files"},
        {"path": "dist", "reason": "contains tracked files"},
        {"path": "legacy/vendored.pyc", "reason": "tracked by git"},
    ]
    for name in (
        "build/keep.txt",
        "build/untracked.o",
        "dist/README.md",
        "dist/pkg.whl",
        "legacy/vendored.pyc",
        "dir é with space/build/keep.txt",
        "dir é with space/build/out.o",
    ):
        assert (repo / name).exists(), name
    assert not (repo / "build/sub/__pycache__").exists()
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""


def test_kept_paths_are_reported_in_text(
    clean: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path / "repo", {"build/keep.txt": 4})

    assert clean.main(["--root", str(repo)]) == 0

    assert capsys.readouterr().out.splitlines() == [
        "kept build (contains tracked files)",
        "freed 0 B in 0 paths",
    ]


def test_git_location_variables_do_not_redirect_the_tracked_set(
    clean: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo = make_repo(tmp_path / "repo", {"build/keep.txt": 4})
    other = make_repo(tmp_path / "other")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(other))

    document = run_json(clean, capsys, "--root", str(repo))

    assert document["root"] == str(repo.resolve())
    assert document["kept"] == [{"path": "build", "reason": "contains tracked files"}]
    assert (repo / "build/keep.txt").exists()


def test_models_env_and_git_are_never_touched(
    clean: ModuleType, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    untouched = [
        "models/cache/__pycache__/x.pyc",
        "models/build/weights.bin",
        "models/.coverage",
        ".env",
        ".env.local",
        "sub/.env/lib/__pycache__/venv.pyc",
        ".git/__pycache__/x.pyc",
        ".git/build/y",
        "build/.env",
        "dist/sub/.git/HEAD",
    ]
    for name in untouched:
        write(repo, name)
    write(repo, "pkg/models/__pycache__/only_top_level_models_is_protected.pyc", 3)
    git_objects = tree(repo / ".git")

    document = run_json(clean, capsys, "--root", str(repo))

    assert document["exit_code"] == 0
    assert document["paths"] == [
        {"path": "pkg/models/__pycache__", "kind": "directory", "bytes": 3}
    ]
    assert document["kept"] == [
        {"path": "build", "reason": "contains build/.env"},
        {"path": "dist", "reason": "contains dist/sub/.git"},
    ]
    for name in untouched:
        assert (repo / name).exists(), name
    assert tree(repo / ".git") == git_objects
    assert git(repo, "log", "--format=%s") == "initial\n"


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[Path]:
    """A folder outside the repository, full of caches."""
    folder = tmp_path / "outside"
    for name in ("__pycache__/x.pyc", "build/y.o", ".coverage", "deep/__pycache__/z.pyc"):
        write(folder, name)
    before = tree(folder)
    yield folder
    assert tree(folder) == before, "content outside the repository changed"


def test_symbolic_links_are_neither_removed_nor_followed(
    clean: ModuleType, repo: Path, outside: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / "build").symlink_to(outside, target_is_directory=True)
    (repo / "__pycache__").symlink_to(outside / "__pycache__", target_is_directory=True)
    (repo / ".coverage").symlink_to(outside / ".coverage")
    (repo / "src" / "linked").symlink_to(outside, target_is_directory=True)

    document = run_json(clean, capsys, "--root", str(repo))

    assert document["exit_code"] == 0
    assert document["paths"] == []
    link_reason = "symbolic link (links are never removed)"
    assert document["kept"] == [
        {"path": ".coverage", "reason": link_reason},
        {"path": "__pycache__", "reason": link_reason},
        {"path": "build", "reason": link_reason},
    ]
    for name in ("build", "__pycache__", ".coverage", "src/linked"):
        assert (repo / name).is_symlink(), name


def test_links_inside_a_removed_folder_are_unlinked_not_followed(
    clean: ModuleType, repo: Path, outside: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(repo, "build/real.o", 5)
    (repo / "build" / "to_outside").symlink_to(outside, target_is_directory=True)

    document = run_json(clean, capsys, "--root", str(repo))

    assert [p["path"] for p in document["paths"]] == ["build"]
    assert not (repo / "build").exists()


def test_candidate_swapped_for_a_link_after_the_scan_is_refused(
    clean: ModuleType, repo: Path, outside: Path
) -> None:
    write(repo, "build/out.o")
    root = repo.resolve()
    report = clean.scan(root, clean.tracked_paths(root))
    assert [c.path for c in report.candidates] == ["build"]
    shutil.rmtree(repo / "build")
    (repo / "build").symlink_to(outside / "build", target_is_directory=True)

    result = clean.remove_all(report, root)

    assert result.candidates == []
    assert result.failed == [clean.Failure("build", "refused: it is a symbolic link")]
    assert (repo / "build").is_symlink()


def test_refusal_reason_checks_each_rule(clean: ModuleType, repo: Path, outside: Path) -> None:
    root = repo.resolve()
    write(root, "pkg/__pycache__/x.pyc")
    (root / "escape").symlink_to(outside, target_is_directory=True)
    (root / "models").mkdir()

    assert clean.refusal_reason(root / "pkg/__pycache__", root) is None
    assert clean.refusal_reason(root / "escape", root) == "it is a symbolic link"
    through_link = clean.refusal_reason(root / "escape" / "build", root)
    assert through_link == f"it is not inside the repository (it resolves to {outside / 'build'})"
    assert (
        clean.refusal_reason(root, root)
        == f"it is not inside the repository (it resolves to {root})"
    )
    protected = "it is a protected path (models/, .git, .env)"
    assert clean.refusal_reason(root / "models" / "build", root) == protected
    assert clean.refusal_reason(root / ".git" / "build", root) == protected
    assert clean.refusal_reason(root / "x" / ".env" / "build", root) == protected


def test_permission_error_on_a_directory_is_reported_and_the_rest_cleaned(
    clean: ModuleType,
    repo: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write(repo, "build/out.o", 40)
    write(repo, "dist/pkg.whl", 50)
    real_rmtree = shutil.rmtree

    def rmtree(path: Path, *args: Any, **kwargs: Any) -> None:
        if Path(path).name == "build":
            blocker = Path(path) / "out.o"
            raise PermissionError(13, "Permission denied", str(blocker))
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(clean.shutil, "rmtree", rmtree)

    code = clean.main(["--root", str(repo)])

    captured = capsys.readouterr()
    assert code == 1
    assert captured.err == "error: build: build/out.o: Permission denied\n"
    assert "Traceback" not in captured.out + captured.err
    assert captured.out.splitlines() == ["removed dist/", "freed 50 B in 1 path"]
    assert (repo / "build/out.o").exists()
    assert not (repo / "dist").exists()


def test_permission_error_on_a_file_is_reported_in_json(
    clean: ModuleType,
    repo: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write(repo, ".coverage", 9)
    write(repo, "coverage.xml", 10)
    real_unlink = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self.name == ".coverage":
            raise PermissionError(13, "Permission denied")
        if self.name == "coverage.xml":
            raise OSError("device is busy")
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)

    document = run_json(clean, capsys, "--root", str(repo))

    assert document["exit_code"] == 1
    assert document["paths"] == []
    assert document["failed"] == [
        {"path": ".coverage", "error": "Permission denied"},
        {"path": "coverage.xml", "error": "device is busy"},
    ]
    assert (repo / ".coverage").exists()


def test_error_outside_the_root_names_the_absolute_path(
    clean: ModuleType, tmp_path: Path, repo: Path
) -> None:
    error = PermissionError(13, "Permission denied", str(tmp_path / "elsewhere"))
    assert clean._describe(error, repo.resolve()) == f"{tmp_path / 'elsewhere'}: Permission denied"


def _refusing_scandir(monkeypatch: pytest.MonkeyPatch, clean: ModuleType, blocked: Path) -> None:
    real_scandir = os.scandir

    def scandir(path: Any) -> Any:
        if not isinstance(path, int) and Path(path) == blocked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(clean.os, "scandir", scandir)


def test_unreadable_directory_is_reported_and_the_rest_cleaned(
    clean: ModuleType,
    repo: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write(repo, "locked/__pycache__/x.pyc")
    write(repo, "pkg/__pycache__/y.pyc", 4)
    _refusing_scandir(monkeypatch, clean, repo.resolve() / "locked")

    code = clean.main(["--root", str(repo)])

    captured = capsys.readouterr()
    assert code == 1
    assert captured.err == "error: locked: could not read: Permission denied\n"
    assert captured.out.splitlines() == ["removed pkg/__pycache__/", "freed 4 B in 1 path"]
    assert (repo / "locked/__pycache__/x.pyc").exists()


def test_candidate_with_unreadable_content_is_kept(
    clean: ModuleType,
    repo: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write(repo, "build/sub/maybe_precious")
    _refusing_scandir(monkeypatch, clean, repo.resolve() / "build" / "sub")

    document = run_json(clean, capsys, "--root", str(repo), "--dry-run")

    assert document["exit_code"] == 1
    assert document["paths"] == []
    assert document["failed"] == [
        {"path": "build/sub", "error": "could not read: Permission denied"}
    ]
    assert (repo / "build/sub/maybe_precious").exists()


def test_default_root_is_the_git_top_level_of_the_cwd(
    clean: ModuleType,
    repo: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write(repo, "src/__pycache__/app.pyc", 6)
    monkeypatch.chdir(repo / "src")

    document = run_json(clean, capsys, "--dry-run")

    assert document["root"] == str(repo.resolve())
    assert document["paths"] == [{"path": "src/__pycache__", "kind": "directory", "bytes": 6}]


def test_cwd_outside_a_repository_is_an_error(
    clean: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    plain = tmp_path / "plain"
    write(plain, "__pycache__/x.pyc")
    monkeypatch.chdir(plain)

    code = clean.main([])

    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert captured.err.startswith(
        f"error: current directory {plain}: not inside a git repository ("
    )
    assert captured.err.rstrip().endswith("; pass --root PATH")
    assert (plain / "__pycache__/x.pyc").exists()


@pytest.mark.parametrize(
    ("make_root", "message"),
    [
        (lambda tmp, repo: tmp / "missing", "not a directory"),
        (lambda tmp, repo: tmp / "plain", "not inside a git repository"),
        (lambda tmp, repo: repo / "src", "not the top level of a git repository"),
    ],
    ids=["missing", "not-a-repository", "subdirectory"],
)
def test_bad_root_is_refused_with_one_message(
    clean: ModuleType,
    tmp_path: Path,
    repo: Path,
    capsys: pytest.CaptureFixture[str],
    make_root: Callable[[Path, Path], Path],
    message: str,
) -> None:
    write(tmp_path, "plain/__pycache__/x.pyc")
    write(repo, "src/__pycache__/y.pyc")
    root = make_root(tmp_path, repo)
    before = tree(tmp_path)

    code = clean.main(["--root", str(root), "--json"])

    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert captured.err.startswith(f"error: --root {root}: {message}")
    assert len(captured.err.strip().splitlines()) == 1
    assert tree(tmp_path) == before


def test_root_given_through_a_link_is_accepted(
    clean: ModuleType, tmp_path: Path, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(repo, "build/x", 3)
    (tmp_path / "alias").symlink_to(repo, target_is_directory=True)

    document = run_json(clean, capsys, "--root", str(tmp_path / "alias"))

    assert document["root"] == str(repo.resolve())
    assert document["paths"] == [{"path": "build", "kind": "directory", "bytes": 3}]
    assert not (repo / "build").exists()
    assert (tmp_path / "alias").is_symlink()


def test_missing_git_is_a_clear_error(
    clean: ModuleType,
    repo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))

    code = clean.main(["--root", str(repo)])

    assert code == 2
    assert capsys.readouterr().err == (
        "error: git is not installed or not on PATH; it is needed to find tracked files\n"
    )


def test_tracked_paths_outside_a_repository_raise(clean: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(clean.CleanError, match="git ls-files failed"):
        clean.tracked_paths(tmp_path)


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (1024 * 1024 - 1, "1.0 MiB"),
        (1253376, "1.2 MiB"),
        (3 * 1024**3, "3.0 GiB"),
        (5 * 1024**4, "5.0 TiB"),
        (2048 * 1024**5, "2048.0 PiB"),
    ],
)
def test_human_size(clean: ModuleType, size: int, text: str) -> None:
    assert clean.human_size(size) == text


@pytest.mark.parametrize(
    ("name", "is_dir", "include_nox", "expected"),
    [
        (".coverage", False, False, True),
        (".coverage.host.1.abc", False, False, True),
        (".coveragerc", False, False, False),
        ("coverage.xml", False, False, True),
        ("mod.pyc", False, False, True),
        ("mod.py", False, False, False),
        ("build", True, False, True),
        ("build", False, False, False),
        ("pkg.egg-info", True, False, True),
        ("pkg.egg-info", False, False, True),
        (".nox", True, False, False),
        (".nox", True, True, True),
        ("__pycache__", False, False, False),
        (".model.safetensors.0a1b2c3d4e5f.tmp", False, False, True),
        (".step-00000004.0a1b2c3d4e5f.tmp", True, False, True),
        (".step-00000004.0a1b2c3d4e5f.tmp.old", True, False, True),
        (".clip.mp4.0a1b2c3d4e5f.tmp.mp4", False, False, True),
        (".model.safetensors.tmp", False, False, False),
        (".model.safetensors.0a1b2c3d4e.tmp", False, False, False),
        ("model.safetensors.0a1b2c3d4e5f.tmp", False, False, False),
    ],
)
def test_is_generated(
    clean: ModuleType, name: str, is_dir: bool, include_nox: bool, expected: bool
) -> None:
    assert clean.is_generated(name, is_dir=is_dir, include_nox=include_nox) is expected


def test_script_runs_standalone(repo: Path, repo_root: Path) -> None:
    write(repo, "dist/a.whl", 12)
    script = repo_root / "scripts" / SCRIPT

    result = subprocess.run(
        [sys.executable, str(script), "--root", str(repo), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["paths"] == [
        {"path": "dist", "kind": "directory", "bytes": 12}
    ]
    assert not (repo / "dist").exists()


def test_help_starts_with_the_one_line_description(
    clean: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        clean.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "Remove what tools generate" in out
    assert "--dry-run" in out
    assert "--all" in out


# --- temporary files of interrupted atomic writes ----------------------------------------


def test_the_orphan_pattern_is_aiprod_cores(clean: ModuleType, tmp_path: Path) -> None:
    """The script runs without the project installed, so it holds a copy of the pattern."""
    assert clean.TEMPORARY_NAME.pattern == atomic.TEMPORARY_NAME.pattern
    assert clean.TEMPORARY_NAME.flags == atomic.TEMPORARY_NAME.flags
    for suffix in ("", ".old", ".mp4"):
        assert clean.is_orphan_name(atomic.temporary_sibling(tmp_path / "a.b", suffix).name)


def age(path: Path, seconds: float) -> None:
    """Set the modification time of ``path`` and everything under it ``seconds`` back."""
    when = time.time() - seconds
    for current, dirs, files in os.walk(path, topdown=False):
        for name in dirs + files:
            os.utime(Path(current, name), (when, when), follow_symlinks=False)
    os.utime(path, (when, when), follow_symlinks=False)


@pytest.mark.fault("interrupted", guards_data=True)
def test_orphans_of_interrupted_writes_are_removed_once_old_and_nothing_else(
    clean: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tracked_orphan = ".notes.md.0a1b2c3d4e5f.tmp"
    repo = make_repo(tmp_path / "repo", {f"docs/{tracked_orphan}": 6})
    run = repo / "runs" / "exp"
    write(run, "model.safetensors", 50)
    weights = atomic.temporary_sibling(run / "model.safetensors")
    write(run, weights.name, 4000)
    step = atomic.temporary_sibling(run / "checkpoints" / "step-00000008")
    write(step, "model.safetensors", 300)
    write(step, "state.json", 20)
    replaced = atomic.temporary_sibling(run / "checkpoints" / "step-00000004", ".old")
    write(replaced, "rng.safetensors", 10)
    clip = atomic.temporary_sibling(repo / "data" / "clips" / "00001_a.mp4")
    write(clip.parent, clip.name, 70)
    for path in (weights, step, replaced, clip):
        age(path, clean.ORPHAN_MIN_AGE_S + 60)
    recent = atomic.temporary_sibling(run / "checkpoints" / "step-00000012")
    write(recent, "model.safetensors", 99)  # a run may be writing it right now
    age(recent, 120)
    recent_file = atomic.temporary_sibling(run / "summary.json")
    write(run, recent_file.name, 5)
    lookalikes = {"runs/exp/.model.safetensors.tmp": 3, "runs/exp/model.safetensors.tmp": 3}
    shielded = {
        "models/.big.safetensors.0a1b2c3d4e5f.tmp": 8,  # models/ is never touched
        ".venv/pyvenv.cfg": 1,
        ".venv/lib/.x.py.0a1b2c3d4e5f.tmp": 8,  # environments are not entered
        ".nox/lint/.y.0a1b2c3d4e5f.tmp": 8,
    }
    for name, size in {**lookalikes, **shielded}.items():
        write(repo, name, size)
        age(repo / name, clean.ORPHAN_MIN_AGE_S + 60)
    before = tree(repo)

    document = run_json(clean, capsys, "--root", str(repo))

    removed = {
        weights: ("file", 4000),
        step: ("directory", 320),
        replaced: ("directory", 10),
        clip: ("file", 70),
    }
    assert document["exit_code"] == 0
    assert document["paths"] == sorted(
        (
            {"path": path.relative_to(repo).as_posix(), "kind": kind, "bytes": size}
            for path, (kind, size) in removed.items()
        ),
        key=lambda entry: entry["path"],
    )
    kept = {entry["path"]: entry["reason"] for entry in document["kept"]}
    assert kept[f"docs/{tracked_orphan}"] == "tracked by git"
    for young, kind in ((recent, "directory"), (recent_file, "file")):
        assert kept[young.relative_to(repo).as_posix()].startswith(
            f"temporary {kind} of an unfinished write, modified "
        )
    assert kept[recent.relative_to(repo).as_posix()].startswith(
        "temporary directory of an unfinished write, modified 2 min ago: it may still be "
        "being written; it goes once unchanged for 60 min"
    )
    gone = {path.relative_to(repo).as_posix() for path in removed}
    assert tree(repo) == {
        p for p in before if not any(p == g or p.startswith(g + "/") for g in gone)
    }
    assert (run / "model.safetensors").read_bytes() == b"x" * 50


@pytest.mark.fault("interrupted", guards_data=True)
def test_an_orphan_is_removed_only_when_nothing_in_it_is_recent(
    clean: ModuleType, repo: Path
) -> None:
    folder = atomic.temporary_sibling(repo / "run" / "checkpoints" / "step-00000004")
    write(folder, "sub/optimizer.safetensors", 5)
    age(folder, clean.ORPHAN_MIN_AGE_S + 60)
    os.utime(folder / "sub" / "optimizer.safetensors")  # written to just now

    report = clean.scan(repo, clean.tracked_paths(repo))

    assert report.candidates == []
    assert [kept.path for kept in report.kept] == [folder.relative_to(repo).as_posix()]
    later = clean.scan(repo, clean.tracked_paths(repo), now=time.time() + 7200)
    assert [c.path for c in later.candidates] == [folder.relative_to(repo).as_posix()]
