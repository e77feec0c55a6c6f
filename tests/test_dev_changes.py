"""aiprod_dev.changes and `nox -s affected`: which targets a change selects, on real git repos."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aiprod_dev import changes

PACKAGES = {
    "aiprod-core": [],
    "aiprod-pipelines": ["aiprod-core", "numpy>=1"],
    "aiprod-trainer": ["aiprod-core", "aiprod-pipelines"],
}


def git(root: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=root, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return result.stdout.strip()


def write(root: Path, relative: str, text: str = "x = 1\n") -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository shaped like AIPROD's, with one commit on main."""
    root = tmp_path / "repo"
    for name, deps in PACKAGES.items():
        module = name.replace("-", "_")
        lines = ", ".join(f'"{dep}"' for dep in deps)
        write(root, f"packages/{name}/pyproject.toml",
              f'[project]\nname = "{name}"\nversion = "0.1.0"\ndependencies = [{lines}]\n')  # fmt: skip
        write(root, f"packages/{name}/src/{module}/__init__.py")
        write(root, f"packages/{name}/tests/test_{module}.py")
        write(root, f"packages/{name}/README.md", "# docs\n")
    for relative in ("scripts/data/make.py", "tests/test_make.py", "noxfile.py", "conftest.py",
                     "config/AIPROD.json", "uv.lock", "constraints.txt", "pyproject.toml",
                     "README.md", "docs/PERFORMANCE.md", ".ci/run"):  # fmt: skip
        write(root, relative)
    write(root, ".gitignore", "ignored/\n")
    git(root, "init", "--quiet", "--initial-branch=main")
    git(root, "add", "-A")
    git(root, "commit", "--quiet", "-m", "start")
    return root


def selected(root: Path, since: str = "HEAD") -> changes.Selection:
    return changes.select(root, changes.changed_files(root, since))


def test_trainer_only_change_selects_the_trainer(repo: Path) -> None:
    write(repo, "packages/aiprod-trainer/src/aiprod_trainer/__init__.py", "x = 2\n")
    selection = selected(repo)
    assert selection.targets == ["aiprod-trainer"]
    assert selection.reasons["aiprod-trainer"] == (
        "changed (packages/aiprod-trainer/src/aiprod_trainer/__init__.py)"
    )


def test_core_change_selects_its_dependents_transitively(repo: Path) -> None:
    write(repo, "packages/aiprod-core/src/aiprod_core/__init__.py", "x = 2\n")
    selection = selected(repo)
    assert selection.targets == ["aiprod-core", "aiprod-pipelines", "aiprod-trainer"]
    assert selection.reasons["aiprod-pipelines"] == "depends on aiprod-core, which changed"
    assert selection.reasons["aiprod-trainer"] == "depends on aiprod-core, which changed"
    report = "\n".join(selection.report("HEAD"))
    assert "aiprod-pipelines: depends on aiprod-core, which changed" in report


def test_a_package_test_change_selects_only_that_package(repo: Path) -> None:
    write(repo, "packages/aiprod-core/tests/test_aiprod_core.py", "x = 2\n")
    assert selected(repo).targets == ["aiprod-core"]


def test_pipelines_change_skips_core(repo: Path) -> None:
    write(repo, "packages/aiprod-pipelines/pyproject.toml",
          '[project]\nname = "aiprod-pipelines"\nversion = "0.2.0"\ndependencies = ["aiprod-core"]\n')  # fmt: skip
    selection = selected(repo)
    assert selection.targets == ["aiprod-pipelines", "aiprod-trainer"]
    assert selection.reasons["aiprod-trainer"] == "depends on aiprod-pipelines, which changed"


def test_scripts_change_selects_tooling(repo: Path) -> None:
    write(repo, "scripts/data/make.py", "x = 2\n")
    selection = selected(repo)
    assert selection.targets == ["tooling"]
    assert selection.reasons["tooling"] == "scripts/data/make.py changed"
    write(repo, "noxfile.py", "x = 3\n")
    assert selected(repo).targets == ["tooling"]


def test_config_change_selects_core_its_dependents_and_tooling(repo: Path) -> None:
    write(repo, "config/AIPROD.json", "{}\n")
    selection = selected(repo)
    assert selection.targets == ["aiprod-core", "aiprod-pipelines", "aiprod-trainer", "tooling"]
    assert selection.reasons["aiprod-core"] == "reads config/AIPROD.json, which changed"


@pytest.mark.parametrize("root_input", ["uv.lock", "pyproject.toml", "conftest.py", ".ci/run"])
def test_root_input_change_selects_everything(repo: Path, root_input: str) -> None:
    write(repo, root_input, "changed = True\n")
    selection = selected(repo)
    assert selection.targets == ["aiprod-core", "aiprod-pipelines", "aiprod-trainer", "tooling"]
    assert selection.reasons["tooling"] == f"{root_input} changed (every target reads it)"


def test_readme_only_change_selects_none_and_says_so(repo: Path) -> None:
    write(repo, "README.md", "# new words\n")
    write(repo, "docs/PERFORMANCE.md", "# figures\n")
    selection = selected(repo)
    assert selection.targets == []
    assert selection.unread == ["README.md", "docs/PERFORMANCE.md"]
    report = selection.report("HEAD")
    assert report[0] == "2 changed file(s) since HEAD"
    assert "no test target reads what changed: nothing to run" in report[1]


def test_committed_staged_and_untracked_changes_count(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD")
    write(repo, "packages/aiprod-trainer/src/aiprod_trainer/new.py")  # committed below
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", "trainer")
    write(repo, "scripts/data/staged.py")
    git(repo, "add", "scripts/data/staged.py")
    write(repo, "packages/aiprod-core/tests/test_untracked.py")
    write(repo, "ignored/anything.py")  # ignored by .gitignore: not a change
    assert changes.changed_files(repo, base) == [
        "packages/aiprod-core/tests/test_untracked.py",
        "packages/aiprod-trainer/src/aiprod_trainer/new.py",
        "scripts/data/staged.py",
    ]
    assert selected(repo, base).targets == ["aiprod-core", "aiprod-trainer", "tooling"]


def test_renames_count_on_both_sides(repo: Path) -> None:
    git(repo, "mv", "packages/aiprod-core/README.md", "scripts/moved.md")
    assert selected(repo).targets == ["aiprod-core", "tooling"]


def test_unknown_ref_is_a_clear_error(repo: Path) -> None:
    with pytest.raises(ValueError, match="--since 'nope' is not a commit of this repository"):
        changes.changed_files(repo, "nope")


def test_default_base_is_the_merge_base_with_main(repo: Path) -> None:
    main = git(repo, "rev-parse", "HEAD")
    git(repo, "switch", "--quiet", "-c", "feature")
    write(repo, "scripts/data/feature.py")
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", "feature")
    assert changes.default_base(repo) == main
    git(repo, "branch", "-m", "main", "trunk")
    with pytest.raises(ValueError, match="no main branch to compare with"):
        changes.default_base(repo)


def test_parse_arguments_passes_the_rest_to_pytest() -> None:
    options, rest = changes.parse_arguments(["--since", "HEAD~2", "-x", "--list", "-k", "a"])
    assert options.since == "HEAD~2"
    assert options.list is True
    assert rest == ["-x", "-k", "a"]


def test_nox_affected_list_prints_json_last(repo: Path, repo_root: Path) -> None:
    """`nox -s affected -- --since REF --list` on a copy of the noxfile: runs nothing."""
    shutil.copy(repo_root / "noxfile.py", repo / "noxfile.py")
    shutil.copytree(repo_root / "aiprod_dev", repo / "aiprod_dev",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copy(repo_root / "pyproject.toml", repo / "pyproject.toml")
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", "tooling")
    write(repo, "packages/aiprod-pipelines/src/aiprod_pipelines/__init__.py", "x = 2\n")

    def affected(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "nox", "--non-interactive", "-s", "affected", "--", *args],
            cwd=repo, capture_output=True, text=True, check=False,
        )  # fmt: skip

    listed = affected("--since", "HEAD", "--list")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout.strip().splitlines()[-1]) == [
        "aiprod-pipelines",
        "aiprod-trainer",
    ]
    assert "aiprod-trainer: depends on aiprod-pipelines, which changed" in listed.stderr
    assert "Running session tests" not in listed.stderr

    default = affected("--list")  # since the merge base with main, which is HEAD here
    assert json.loads(default.stdout.strip().splitlines()[-1]) == [
        "aiprod-pipelines",
        "aiprod-trainer",
    ]
    bad = affected("--since", "no-such-ref", "--list")
    assert bad.returncode != 0
    assert "--since 'no-such-ref' is not a commit of this repository" in bad.stderr
