"""aiprod_dev.lock and scripts/maintenance/lock_dependencies.py: one portable lock.

The repository's own lock is checked for real (uv, offline); the failure cases use small
lock texts and workspaces written by the tests.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from aiprod_dev import hosts, lock
from aiprod_dev.workspace import load_toml

PYPI = "https://pypi.org/simple"


@pytest.fixture(scope="module")
def lock_text(uv_lock_text: Callable[..., str]) -> str:
    """A small lock: a workspace member, and networkx locked twice (a fork by Python)."""
    return uv_lock_text(
        ("aiprod-core", "0.1.0", "packages/aiprod-core"),
        ("numpy", "2.4.6", PYPI),
        ("networkx", "3.6.1", PYPI),
        ("networkx", "3.7", PYPI),
        ("torch", "2.13.0", PYPI),
    )


@pytest.fixture(scope="module")
def uv() -> str:
    found = hosts.uv_binary()
    assert found is not None, "uv is part of the scripts group, so the tooling environment has it"
    return found


def test_locked_versions(lock_text: str) -> None:
    versions = lock.locked_versions(lock_text)
    assert versions["networkx"] == {"3.6.1", "3.7"}
    assert versions["torch"] == {"2.13.0"}
    assert versions["aiprod-core"] == {"0.1.0"}


def test_machine_paths(lock_text: str) -> None:
    assert lock.machine_paths(lock_text) == []
    local = lock_text.replace(
        'version = "2.13.0"\nsource = { registry = "https://pypi.org/simple" }',
        'version = "2.13.0+cpu"\nsource = { registry = "/opt/wheels" }',
    )
    assert lock.machine_paths(local) == ["torch: registry = /opt/wheels"]
    absolute = lock_text.replace('editable = "packages/aiprod-core"', 'editable = "/home/me/c"')
    assert lock.machine_paths(absolute) == ["aiprod-core: editable = /home/me/c"]
    file_url = lock_text.replace('"https://pypi.org/simple" }\n\n[[package]]\nname = "networkx"',
                                 '"file:///mirror/simple" }\n\n[[package]]\nname = "networkx"', 1)  # fmt: skip
    assert lock.machine_paths(file_url) == ["numpy: registry = file:///mirror/simple"]


def test_matches_lock_allows_torch_builds_only(lock_text: str) -> None:
    locked = lock.locked_versions(lock_text)
    assert lock.matches_lock({"torch": "2.13.0+cpu", "networkx": "3.7", "pip": "25"}, locked) == []
    assert lock.matches_lock({"numpy": "2.4.6+local"}, locked) == [
        "numpy 2.4.6+local is installed, uv.lock has 2.4.6"
    ]
    assert lock.matches_lock({"torch": "2.14.1"}, locked) == [
        "torch 2.14.1 is installed, uv.lock has 2.13.0"
    ]


def test_the_repository_lock_is_in_order(repo_root: Path, uv: str) -> None:
    assert lock.check(repo_root, uv, os.environ) == []
    text = (repo_root / "uv.lock").read_text()
    assert lock.locked_versions(text)["torch"] == {"2.13.0"}, "the lock pins torch's version"
    assert "+cpu" not in text
    assert "/opt/" not in text


def make_workspace(root: Path) -> Path:
    """A one-package workspace with a scripts group, locked for real (no network: offline)."""
    (root / "packages" / "tiny" / "src" / "tiny").mkdir(parents=True)
    (root / "packages" / "tiny" / "src" / "tiny" / "__init__.py").write_text("")
    (root / "packages" / "tiny" / "pyproject.toml").write_text(
        '[project]\nname = "tiny"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n'
        "dependencies = []\n"
        '[build-system]\nrequires = ["uv_build>=0.8,<0.14"]\nbuild-backend = "uv_build"\n'
    )
    (root / "scripts" / "dev").mkdir(parents=True)
    (root / "scripts" / "dev" / "hello.py").write_text(
        '# /// script\n# dependencies = ["tiny"]\n# ///\n"""Say hello."""\n'
    )
    (root / "pyproject.toml").write_text(
        '[tool.uv.workspace]\nmembers = ["packages/*"]\n'
        "[tool.uv.sources]\ntiny = { workspace = true }\n"
        '[dependency-groups]\nscripts = ["tiny"]\n'
    )
    return root


def test_check_reports_each_problem_with_its_fix(tmp_path: Path, uv: str) -> None:
    root = make_workspace(tmp_path)
    assert lock.check(root, uv, os.environ) == [f"uv.lock is missing; {lock.FIX}"]
    count, constraints = lock.relock(root, uv, {**os.environ, "UV_OFFLINE": "1"})
    assert count == 1
    assert constraints.read_text() == lock.CONSTRAINTS_HEADER
    assert lock.check(root, uv, os.environ) == []

    constraints.write_text(lock.CONSTRAINTS_HEADER + "numpy==1.0\n")
    assert lock.check(root, uv, os.environ) == [
        f"constraints.txt differs from `uv export` of uv.lock; {lock.FIX}"
    ]
    (root / "scripts" / "dev" / "hello.py").write_text(
        '# /// script\n# dependencies = ["tiny", "Rich>=13"]\n# ///\n"""Say hello."""\n'
    )
    problems = lock.check(root, uv, os.environ)
    assert problems[0].startswith(
        "scripts/dev/hello.py declares 'rich>=13', which the 'scripts' dependency group lacks"
    )
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('["tiny"]', '["tiny", "rich>=13"]'))
    stale = lock.check(root, uv, os.environ)
    assert len(stale) == 1
    assert stale[0].startswith("uv.lock does not match the pyproject.toml")
    assert stale[0].endswith(lock.FIX)


def test_check_without_uv_says_how_to_install_it(tmp_path: Path) -> None:
    assert lock.check(tmp_path, None, {}) == [
        "uv not found; install it with `python3 -m pip install --user uv`"
    ]


def test_locking_ignores_find_links() -> None:
    environ = {"UV_FIND_LINKS": "/somewhere/wheels", "PATH": os.environ["PATH"]}
    assert lock.lock_environment(environ) == {"PATH": os.environ["PATH"]}


def test_script_group_problems_both_ways(tmp_path: Path) -> None:
    root = make_workspace(tmp_path)
    assert lock.script_group_problems(root) == []
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('["tiny"]', '["tiny", "extra>=1"]'))
    assert lock.script_group_problems(root) == [
        "the 'scripts' dependency group names 'extra>=1', which no script declares"
    ]


def test_repository_scripts_group_matches_headers(repo_root: Path) -> None:
    assert lock.script_group_problems(repo_root) == []
    group = load_toml(repo_root / "pyproject.toml")["dependency-groups"]["scripts"]
    assert "aiprod-trainer" in group


def test_write_atomically_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "constraints.txt"
    target.write_text("old\n")
    lock.write_atomically(target, "new\n")
    assert target.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["constraints.txt"]


def test_lock_dependencies_script(
    load_script: Callable[[str], ModuleType],
    tmp_path: Path,
    repo_root: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script = load_script("maintenance/lock_dependencies.py")
    assert script.main(["--root", str(repo_root), "--check"]) == 0
    assert "uv.lock is current and portable" in capsys.readouterr().out

    root = make_workspace(tmp_path)
    monkeypatch.setenv("UV_OFFLINE", "1")
    monkeypatch.setenv("UV_FIND_LINKS", str(tmp_path / "wheels"))
    assert script.main(["--root", str(root)]) == 0
    assert "locked 1 packages in uv.lock; wrote constraints.txt" in capsys.readouterr().out
    assert str(tmp_path) not in (root / "uv.lock").read_text()
    (root / "constraints.txt").write_text("torch==1\n")
    assert script.main(["--root", str(root), "--check"]) == 1
    assert "constraints.txt differs" in capsys.readouterr().err
    assert script.main(["--root", str(tmp_path / "nowhere")]) == 2
    assert "expected the workspace root" in capsys.readouterr().err


def test_lock_dependencies_without_uv(
    load_script: Callable[[str], ModuleType],
    repo_root: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script = load_script("maintenance/lock_dependencies.py")
    monkeypatch.setattr(script, "uv_binary", lambda: None)
    assert script.main(["--root", str(repo_root)]) == 2
    assert "uv not found" in capsys.readouterr().err
