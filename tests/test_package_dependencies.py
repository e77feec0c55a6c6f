"""Each package imports only what it declares, and the dependency direction holds.

The nox test environments enforce this at run time (each holds one package and what it
declares); this test says which import is undeclared before any environment is built.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p.parent for p in (REPO / "packages").glob("*/pyproject.toml"))
#: Import names whose distribution is named differently.
DISTRIBUTION_OF = {"PIL": "pillow", "yaml": "pyyaml", "imageio_ffmpeg": "imageio-ffmpeg"}
#: Allowed workspace dependencies (the one-way direction of docs/ARCHITECTURE.md):
#: the trainer writes validation videos through the pipelines; nothing depends on it.
ALLOWED = {
    "aiprod-core": set(),
    "aiprod-pipelines": {"aiprod-core"},
    "aiprod-trainer": {"aiprod-core", "aiprod-pipelines"},
}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(package: Path) -> set[str]:
    project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
    names = set()
    for requirement in project.get("dependencies", []):
        match = re.match(r"[A-Za-z0-9._-]+", requirement)
        assert match, requirement
        names.add(normalize(match.group(0)))
    return names


def imported_distributions(package: Path) -> dict[str, list[str]]:
    """Distribution name -> files importing it, for every non-stdlib top-level import."""
    own = {p.name for p in (package / "src").iterdir() if p.is_dir()}
    found: dict[str, list[str]] = {}
    for path in sorted((package / "src").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in own or top in sys.stdlib_module_names or top == "__future__":
                    continue
                dist = normalize(DISTRIBUTION_OF.get(top, top))
                found.setdefault(dist, []).append(str(path.relative_to(package)))
    return found


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_every_import_is_declared(package: Path) -> None:
    undeclared = {
        dist: files for dist, files in imported_distributions(package).items()
        if dist not in declared(package)
    }  # fmt: skip
    assert not undeclared, f"{package.name} imports undeclared distributions: {undeclared}"


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_workspace_dependencies_point_one_way(package: Path) -> None:
    members = {normalize(p.name) for p in PACKAGES}
    assert declared(package) & members == ALLOWED[package.name]


def test_the_check_catches_an_undeclared_import(tmp_path: Path) -> None:
    package = tmp_path / "aiprod-x"
    (package / "src" / "aiprod_x").mkdir(parents=True)
    (package / "pyproject.toml").write_text(
        '[project]\nname = "aiprod-x"\ndependencies = ["numpy"]\n'
    )
    (package / "src" / "aiprod_x" / "m.py").write_text(
        "import os\nimport numpy\nfrom PIL import Image\nfrom aiprod_x import m\n"
    )
    assert set(imported_distributions(package)) == {"numpy", "pillow"}
    assert declared(package) == {"numpy"}
