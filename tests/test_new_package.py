"""new_package renders the template into a complete, buildable package layout."""

from __future__ import annotations

import shutil
import tomllib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture
def new_package(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("dev/new_package.py")


@pytest.fixture
def workspace(tmp_path: Path, repo_root: Path) -> Path:
    (tmp_path / "config" / "templates").mkdir(parents=True)
    shutil.copy(
        repo_root / "config" / "templates" / "pyproject.template.toml",
        tmp_path / "config" / "templates",
    )
    return tmp_path


def test_creates_the_layout(new_package: ModuleType, workspace: Path) -> None:
    code = new_package.main(
        ["aiprod-eval", "--description", 'Evaluate "models".', "--root", str(workspace)]
    )
    assert code == 0
    package = workspace / "packages" / "aiprod-eval"
    project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
    assert project["name"] == "aiprod-eval"
    assert project["description"] == 'Evaluate "models".'
    assert project["dependencies"] == ["aiprod-core"]
    assert (package / "src" / "aiprod_eval" / "py.typed").is_file()
    for folder in ("unit", "integration", "fixtures"):
        assert (package / "tests" / folder).is_dir()
    test = (package / "tests" / "unit" / "test_import.py").read_text()
    assert "import aiprod_eval" in test
    compile(test, "test_import.py", "exec")


def test_template_placeholders_all_filled(new_package: ModuleType, repo_root: Path) -> None:
    template = (repo_root / "config" / "templates" / "pyproject.template.toml").read_text()
    rendered = new_package.render(template, "aiprod-x", "X.")
    body = "\n".join(line for line in rendered.splitlines() if not line.startswith("#"))
    assert "{" not in body.replace("{ ", "")
    assert tomllib.loads(rendered)["project"]["name"] == "aiprod-x"


@pytest.mark.parametrize("name", ["eval", "aiprod_eval", "aiprod-Eval", "aiprod-"])
def test_rejects_bad_names(
    new_package: ModuleType, workspace: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert new_package.main([name, "--root", str(workspace)]) == 2
    assert "must look like aiprod-<word>" in capsys.readouterr().err
    assert not (workspace / "packages").exists()


def test_refuses_to_overwrite(
    new_package: ModuleType, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    existing = workspace / "packages" / "aiprod-eval"
    existing.mkdir(parents=True)
    (existing / "keep.txt").write_text("mine")
    assert new_package.main(["aiprod-eval", "--root", str(workspace)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert (existing / "keep.txt").read_text() == "mine"


def test_missing_template(
    new_package: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert new_package.main(["aiprod-eval", "--root", str(tmp_path)]) == 2
    assert "template" in capsys.readouterr().err
