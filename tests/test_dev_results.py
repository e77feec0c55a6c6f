"""aiprod_dev.results: a passing run on identical inputs is reported, not repeated."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from nox.command import CommandFailed

from aiprod_dev import results, targets


def make_env(root: Path, torch: str = "2.13.0+cpu") -> Path:
    """A fake virtual environment: pyvenv.cfg and a dist-info for torch."""
    env = root / ".nox" / "tests-aiprod-core"
    site = env / "lib" / "python3.11" / "site-packages"
    dist = site / "torch-2.13.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: torch\nVersion: {torch}\n")
    (env / "pyvenv.cfg").write_text("home = /usr/bin\nversion_info = 3.11.7\n")
    return env


def make_repo(root: Path) -> Path:
    (root / "packages" / "aiprod-core" / "src" / "aiprod_core").mkdir(parents=True)
    (root / "packages" / "aiprod-core" / "tests").mkdir()
    (root / "packages" / "aiprod-core" / "pyproject.toml").write_text(
        '[project]\nname = "aiprod-core"\nversion = "0.1.0"\ndependencies = []\n'
    )
    (root / "packages" / "aiprod-core" / "src" / "aiprod_core" / "__init__.py").write_text(
        "a = 1\n"
    )
    (root / "packages" / "aiprod-core" / "tests" / "test_a.py").write_text("def test(): pass\n")
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    (root / "uv.lock").write_text("version = 1\n")
    (root / "README.md").write_text("# docs\n")
    (root / ".gitignore").write_text(".nox/\n__pycache__/\n")
    subprocess.run(["git", "init", "--quiet"], cwd=root, check=True)
    return root


class FakeSession:
    """The parts of nox.Session that run_tests uses; `outcome` decides what pytest does."""

    def __init__(self, env_dir: Path, outcome: Any = True) -> None:
        self.virtualenv = type("V", (), {"location": str(env_dir)})()
        self.outcome = outcome
        self.runs: list[tuple[str, ...]] = []
        self.logs: list[str] = []

    def log(self, message: str) -> None:
        self.logs.append(message)

    def error(self, message: str) -> None:
        raise RuntimeError(message)

    def run(self, *args: str, env: dict[str, str]) -> Any:
        self.runs.append(args)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        Path(env["COVERAGE_FILE"]).write_text("coverage data\n")
        return self.outcome


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(results.SWITCH, raising=False)
    return make_repo(tmp_path)


def run(repo: Path, session: FakeSession, posargs: list[str] = (), force: bool = False) -> None:
    pytest_run = targets.pytest_run("aiprod-core", list(posargs), repo)
    results.run_tests(session, "aiprod-core", pytest_run, repo, force)  # type: ignore[arg-type]  # FakeSession stands in for nox.Session


def test_second_identical_run_is_cached_and_restores_coverage(repo: Path) -> None:
    env = make_env(repo)
    first = FakeSession(env)
    run(repo, first)
    assert len(first.runs) == 1
    assert first.runs[0][0] == "pytest"
    coverage = repo / ".coverage.aiprod-core"
    coverage.unlink()

    second = FakeSession(env)
    run(repo, second)
    assert second.runs == []
    assert second.logs[0].startswith("cached: passed (identical inputs passed on ")
    assert "coverage data restored" in second.logs[0]
    assert coverage.read_text() == "coverage data\n"


@pytest.mark.parametrize(
    "change",
    [
        lambda repo, env: (repo / "packages/aiprod-core/src/aiprod_core/__init__.py").write_text(
            "a = 2\n"
        ),
        lambda repo, env: (repo / "packages/aiprod-core/tests/test_new.py").write_text("x = 1\n"),
        lambda repo, env: (repo / "uv.lock").write_text("version = 2\n"),
        lambda repo, env: (repo / "pyproject.toml").write_text("[tool.coverage.run]\n"),
        lambda repo, env: (env / "pyvenv.cfg").write_text("version_info = 3.12.1\n"),
        lambda repo, env: (
            env / "lib/python3.11/site-packages/torch-2.13.0.dist-info/METADATA"
        ).write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.13.0\n"),
    ],
    ids=["source", "new-test", "lock", "pytest-config", "python", "torch-build"],
)
def test_any_input_change_reruns(repo: Path, change: Any) -> None:
    env = make_env(repo)
    run(repo, FakeSession(env))
    change(repo, env)
    again = FakeSession(env)
    run(repo, again)
    assert len(again.runs) == 1


def test_what_is_not_an_input_keeps_the_cache(repo: Path) -> None:
    env = make_env(repo)
    run(repo, FakeSession(env))
    (repo / "README.md").write_text("# other docs\n")
    (repo / "packages/aiprod-core/src/aiprod_core/__pycache__").mkdir()
    (repo / "packages/aiprod-core/src/aiprod_core/__pycache__/x.pyc").write_bytes(b"\0")
    again = FakeSession(env)
    run(repo, again)
    assert again.runs == []


def test_pytest_arguments_are_part_of_the_key(repo: Path) -> None:
    env = make_env(repo)
    run(repo, FakeSession(env))
    other = FakeSession(env)
    run(repo, other, ["-x"])
    assert len(other.runs) == 1
    assert other.runs[0][-1] == "-x"


def test_force_and_the_switch_rerun(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = make_env(repo)
    run(repo, FakeSession(env))
    forced = FakeSession(env)
    run(repo, forced, force=True)
    assert len(forced.runs) == 1
    monkeypatch.setenv(results.SWITCH, "off")
    switched = FakeSession(env)
    run(repo, switched)
    assert len(switched.runs) == 1
    assert results.strip_force(["-x", "--force"]) == (["-x"], True)


def test_a_failed_run_is_never_cached(repo: Path) -> None:
    env = make_env(repo)
    failing = FakeSession(env, outcome=CommandFailed("Returned code 1", return_code=1))
    with pytest.raises(CommandFailed):
        run(repo, failing)
    assert not (env.parent / "results").exists()
    again = FakeSession(env)
    run(repo, again)
    assert len(again.runs) == 1


def test_no_tests_matched_is_named(repo: Path) -> None:
    env = make_env(repo)
    empty = FakeSession(env, outcome=CommandFailed("Returned code 5", return_code=5))
    with pytest.raises(RuntimeError, match="no tests matched `-k nothing` in aiprod-core"):
        run(repo, empty, ["-k", "nothing"])
    assert any(
        "coverage is reported, but the target's minimum (90%)" in line for line in empty.logs
    )


def test_install_only_stores_nothing(repo: Path) -> None:
    env = make_env(repo)
    run(repo, FakeSession(env, outcome=None))
    assert not (env.parent / "results").exists()


def test_store_keeps_the_newest_runs(tmp_path: Path) -> None:
    coverage = tmp_path / ".coverage.x"
    coverage.write_text("data")
    for index in range(results.KEEP + 2):
        stored = results.store(tmp_path / "cache", "x", f"key{index}", 1.0, coverage)
        record = json.loads((stored.folder / "result.json").read_text())
        assert record["key"] == f"key{index}"
    kept = sorted(p.name for p in (tmp_path / "cache" / "x").iterdir())
    assert len(kept) == results.KEEP
    assert "key0" not in kept
    assert f"key{results.KEEP + 1}" in kept
    assert results.lookup(tmp_path / "cache", "x", "key0") is None
    assert results.lookup(tmp_path / "cache", "x", f"key{results.KEEP + 1}") is not None


def test_corrupt_record_is_a_miss(tmp_path: Path) -> None:
    folder = tmp_path / "x" / "abc"
    folder.mkdir(parents=True)
    (folder / "result.json").write_text("{not json")
    assert results.lookup(tmp_path, "x", "abc") is None


def test_input_files_without_git_skip_caches(tmp_path: Path) -> None:
    (tmp_path / "src" / "__pycache__").mkdir(parents=True)
    (tmp_path / "src" / "a.py").write_text("a = 1\n")
    (tmp_path / "src" / "__pycache__" / "a.pyc").write_bytes(b"\0")
    (tmp_path / "top.toml").write_text("")
    assert results.input_files(tmp_path, ["src/", "top.toml", "missing/"]) == [
        "src/a.py",
        "top.toml",
    ]


@pytest.mark.parametrize(
    ("value", "on"), [("off", False), ("0", False), ("no", False), ("on", True), ("1", True)]
)
def test_enabled(value: str, on: bool) -> None:
    assert results.enabled({results.SWITCH: value}) is on
    assert results.enabled({}) is True
