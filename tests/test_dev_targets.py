"""aiprod_dev.targets: what each test target installs, reads and runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiprod_dev import targets
from aiprod_dev.workspace import load_toml, requirement_name, split_requirements


@pytest.mark.parametrize(
    ("posargs", "expected"),
    [
        ([], None),
        (["-x"], None),  # stops at a failure, but a passing run ran everything
        (["-x", "--maxfail", "2", "-q"], None),
        (["-n", "2", "--tb=short"], None),
        (["-k", "registry", "-x"], "-k"),
        (["-m", "not slow"], "-m"),
        (["--lf"], "--lf"),
        (["--deselect=tests/test_a.py::t"], "--deselect"),
        (["tests/unit/test_vae_model.py"], "tests/unit/test_vae_model.py"),
        (["-p", "no:randomly", "unit/test_x.py::test_y"], "unit/test_x.py::test_y"),
    ],
)
def test_selection(posargs: list[str], expected: str | None) -> None:
    assert targets.selection(posargs) == expected


def test_pytest_run_enforces_the_minimum_only_on_full_runs(repo_root: Path) -> None:
    full = targets.pytest_run("aiprod-core", ["-x"], repo_root)
    assert full.subset is None
    assert full.args[0] == str(repo_root / "packages" / "aiprod-core" / "tests")
    assert "--cov=aiprod_core" in full.args
    assert "--cov-fail-under=90" in full.args
    assert full.args[-1] == "-x"
    assert full.env == {"COVERAGE_FILE": str(repo_root / ".coverage.aiprod-core")}

    subset = targets.pytest_run("aiprod-core", ["-k", "name", "-x"], repo_root)
    assert subset.subset == "-k"
    assert not any(arg.startswith("--cov-fail-under") for arg in subset.args)
    assert subset.args[-3:] == ["-k", "name", "-x"]

    tooling = targets.pytest_run("tooling", [], repo_root)
    assert tooling.args[:3] == [str(repo_root / "tests"), "--cov=scripts", "--cov=aiprod_dev"]
    assert tooling.env["PYTHONPATH"] == str(repo_root)
    assert tooling.args[-2:] == ["-n", "auto"], "the tooling tests run on every core"
    assert "-n" not in full.args


def test_target_requirements(repo_root: Path) -> None:
    pyproject = load_toml(repo_root / "pyproject.toml")
    core = targets.target_requirements(pyproject, "aiprod-core")
    assert core[0] == "aiprod-core"
    assert "pytest>=8.3" in core
    assert "sentence-transformers>=2.2" in core  # test-aiprod-core group
    tooling = targets.target_requirements(pyproject, "tooling")
    assert "aiprod-trainer" in tooling
    assert "nox[uv]>=2026.8.10" in tooling
    assert "sentence-transformers>=2.2" not in tooling
    assert "aiprod-pipelines[server]" in tooling  # the error-hierarchy test imports the server
    pipelines = targets.target_requirements(pyproject, "aiprod-pipelines")
    assert pipelines[0] == "aiprod-pipelines[server]"
    assert targets.target_requirements(pyproject, "aiprod-trainer")[0] == "aiprod-trainer"


def test_environments_of_the_whole_workspace_hold_the_server(repo_root: Path) -> None:
    packages = targets.all_packages(repo_root)
    assert packages == ["aiprod-core", "aiprod-pipelines[server]", "aiprod-trainer"]
    local, external = split_requirements(packages, repo_root)
    assert [path.name for path in local] == ["aiprod-core", "aiprod-pipelines", "aiprod-trainer"]
    assert {requirement_name(r) for r in external} >= {"fastapi", "uvicorn", "prometheus-client"}


def test_target_inputs(repo_root: Path) -> None:
    core = targets.target_inputs("aiprod-core", repo_root)
    assert "packages/aiprod-core/" in core
    assert "config/" in core
    assert "uv.lock" in core
    assert not any(path.startswith("packages/aiprod-pipelines") for path in core)
    trainer = targets.target_inputs("aiprod-trainer", repo_root)
    assert "packages/aiprod-core/src/" in trainer
    assert "packages/aiprod-pipelines/src/" in trainer
    assert "packages/aiprod-core/tests/" not in trainer
    tooling = targets.target_inputs("tooling", repo_root)
    assert {"scripts/", "tests/", "noxfile.py", "packages/aiprod-trainer/src/"} <= set(tooling)


def test_coverage_by_target() -> None:
    def entry(lines: int, covered: int, branches: int = 0, covered_branches: int = 0) -> dict:
        return {
            "summary": {
                "num_statements": lines,
                "covered_lines": covered,
                "num_branches": branches,
                "covered_branches": covered_branches,
            }
        }

    report = {
        "files": {
            "packages/aiprod-core/src/aiprod_core/a.py": entry(10, 9, 10, 10),
            "packages/aiprod-core/src/aiprod_core/b.py": entry(10, 10),
            "scripts/maintenance/clean.py": entry(4, 1),
            "aiprod_dev/lock.py": entry(4, 4),
            "conftest.py": entry(5, 0),
            "packages/aiprod-trainer/src/aiprod_trainer/empty.py": entry(0, 0),
        }
    }
    assert targets.coverage_by_target(report) == {
        "aiprod-core": 29 / 30 * 100,
        "aiprod-trainer": 100.0,
        "tooling": 62.5,
    }
    assert targets.coverage_target("packages/x/src/x/m.py") == "x"
    assert targets.coverage_target("noxfile.py") is None


def test_typechecked_covers_every_package_script_and_the_tooling(repo_root: Path) -> None:
    paths = targets.typechecked(repo_root)
    assert paths[:3] == [
        "packages/aiprod-core/src/aiprod_core",
        "packages/aiprod-pipelines/src/aiprod_pipelines",
        "packages/aiprod-trainer/src/aiprod_trainer",
    ]
    assert "scripts/maintenance/lock_dependencies.py" in paths
    assert paths[-2:] == ["aiprod_dev", "noxfile.py"]
    assert all((repo_root / path).exists() for path in paths)
