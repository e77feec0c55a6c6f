"""The workspace as data: packages, their dependency graph, dependency groups, scripts.

Everything is read from the files (``packages/*/pyproject.toml``, the root
``[dependency-groups]``, each script's PEP 723 header); names and requirement strings are
parsed with ``packaging``, so ``Nox[uv]>=2025`` and ``nox`` are the same distribution.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
SCRIPT_CATEGORIES = ("data", "maintenance", "testing", "dev", "deployment")

#: PEP 723's block syntax: ``# /// script`` ... ``# ///``, every line in between a comment.
_PEP723_BLOCK = re.compile(
    r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$"
)


def load_toml(path: Path) -> dict[str, Any]:
    """A TOML file as a dict."""
    with path.open("rb") as handle:
        return tomllib.load(handle)


def requirement_name(requirement: str) -> str:
    """The canonical distribution name of a PEP 508 requirement string."""
    try:
        return canonicalize_name(Requirement(requirement).name)
    except InvalidRequirement as exc:
        raise ValueError(f"not a requirement: {requirement!r} ({exc})") from None


def normalized_requirement(requirement: str) -> str:
    """A requirement string in one spelling (canonical name, sorted extras and specifiers)."""
    parsed = Requirement(requirement)
    parsed.name = canonicalize_name(parsed.name)
    return str(parsed)


def _projects(root: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Each workspace member (canonical name): its folder and its ``[project]`` table."""
    projects: dict[str, tuple[Path, dict[str, Any]]] = {}
    for pyproject in sorted((root / "packages").glob("*/pyproject.toml")):
        project = load_toml(pyproject)["project"]
        projects[canonicalize_name(project["name"])] = (pyproject.parent, project)
    return projects


def workspace_packages(root: Path = ROOT) -> dict[str, Path]:
    """Workspace member names (canonical) mapped to their folders."""
    return {name: folder for name, (folder, _) in _projects(root).items()}


def package_dependencies(package: str, root: Path = ROOT) -> list[str]:
    """The ``[project] dependencies`` a workspace package declares."""
    return list(_projects(root)[canonicalize_name(package)][1].get("dependencies", []))


def dependency_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Each workspace package mapped to the workspace packages it declares directly."""
    projects = _projects(root)
    return {
        name: {
            requirement_name(dep)
            for dep in project.get("dependencies", [])
            if requirement_name(dep) in projects
        }
        for name, (_, project) in projects.items()
    }


def closure(graph: Mapping[str, set[str]], package: str) -> list[str]:
    """``package`` and every workspace package it depends on, dependencies first."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        for dependency in sorted(graph[name]):
            visit(dependency)
        order.append(name)

    visit(package)
    return order


def package_extras(package: str, root: Path = ROOT) -> dict[str, list[str]]:
    """The ``[project.optional-dependencies]`` of a workspace package: extra -> requirements."""
    project = _projects(root)[canonicalize_name(package)][1]
    return {
        canonicalize_name(extra): list(requirements)
        for extra, requirements in project.get("optional-dependencies", {}).items()
    }


def split_requirements(
    requirements: Iterable[str], root: Path = ROOT
) -> tuple[list[Path], list[str]]:
    """Separate workspace packages (closed over their own workspace dependencies) from the rest.

    Returns the folders of the workspace packages to install, dependencies first, and the
    remaining third-party requirement strings, in their original order without repeats. A
    workspace package named with extras (``aiprod-pipelines[server]``) adds the extras'
    requirements after it: the package itself installs from its folder, without extras.
    """
    members = workspace_packages(root)
    graph = dependency_graph(root)
    local: list[Path] = []
    external: list[str] = []
    pending = list(requirements)
    expanded: set[tuple[str, str]] = set()
    while pending:
        requirement = pending.pop(0)
        name = requirement_name(requirement)
        if name not in members:
            if requirement not in external:
                external.append(requirement)
            continue
        for package in closure(graph, name):
            if members[package] not in local:
                local.append(members[package])
        extras = package_extras(name, root)
        added = []
        for extra in sorted(canonicalize_name(e) for e in Requirement(requirement).extras):
            if extra not in extras:
                known = ", ".join(sorted(extras)) or "(none)"
                raise ValueError(f"{name} has no extra {extra!r}; expected one of: {known}")
            if (name, extra) not in expanded:
                expanded.add((name, extra))
                added += extras[extra]
        pending[:0] = added
    return local, external


def local_requirements(local: Iterable[Path], root: Path = ROOT) -> list[str]:
    """Third-party requirements declared by the given workspace package folders."""
    members = workspace_packages(root)
    names = {path: name for name, path in members.items()}
    requirements: list[str] = []
    for path in local:
        for requirement in package_dependencies(names[path], root):
            if requirement_name(requirement) not in members and requirement not in requirements:
                requirements.append(requirement)
    return requirements


def dependency_group(pyproject: Mapping[str, Any], name: str) -> list[str]:
    """A PEP 735 dependency group's requirement strings, ``include-group`` entries expanded."""
    groups = pyproject.get("dependency-groups", {})
    if name not in groups:
        known = ", ".join(groups) or "(none)"
        raise ValueError(f"no dependency group {name!r}; expected one of: {known}")
    result: list[str] = []
    for entry in groups[name]:
        if isinstance(entry, dict):
            included = dependency_group(pyproject, entry["include-group"])
            result += [r for r in included if r not in result]
        elif entry not in result:
            result.append(entry)
    return result


def script_metadata(script: Path) -> dict[str, Any]:
    """The PEP 723 ``# /// script`` block of a script (empty when it has none)."""
    blocks = [
        m for m in _PEP723_BLOCK.finditer(script.read_text(encoding="utf-8"))
        if m.group("type") == "script"
    ]  # fmt: skip
    if len(blocks) > 1:
        raise ValueError(f"{script}: more than one '# /// script' block")
    if not blocks:
        return {}
    content = "".join(
        line[2:] if line.startswith("# ") else line[1:]
        for line in blocks[0].group("content").splitlines(keepends=True)
    )
    return tomllib.loads(content)


def script_description(script: Path) -> str:
    """The first line of a script's module docstring, read without importing it."""
    docstring = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8")))
    return docstring.splitlines()[0].strip() if docstring else "(no description)"


def category_scripts(category: str, root: Path = ROOT) -> dict[str, Path]:
    """Script names (file stems) of one scripts/ category mapped to their paths."""
    return {path.stem: path for path in sorted((root / "scripts" / category).glob("*.py"))}


def all_scripts(root: Path = ROOT) -> list[Path]:
    """Every script of every category."""
    return [
        path for category in SCRIPT_CATEGORIES for path in category_scripts(category, root).values()
    ]


def find_script(category: str, name: str, root: Path = ROOT) -> Path:
    """The script ``name`` (with or without .py) in ``category``, or a clear error."""
    scripts = category_scripts(category, root)
    stem = name.removesuffix(".py")
    if stem not in scripts:
        known = ", ".join(scripts) or "(none)"
        raise ValueError(f"no script {name!r} in scripts/{category}/; expected one of: {known}")
    return scripts[stem]


def git_files(root: Path, prefixes: Iterable[str] = ()) -> list[str] | None:
    """Files git knows under ``prefixes`` (tracked, and untracked but not ignored), sorted;
    None when ``root`` is not a git checkout."""
    result = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *prefixes],
        cwd=root, capture_output=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        return None
    return sorted({name for name in result.stdout.decode().split("\0") if name})


def copy_checkout(root: Path, target: Path) -> Path:
    """Copy what a clone of ``root``'s working tree would hold (the files git knows) to ``target``."""
    names = git_files(root)
    if names is None:
        raise ValueError(f"{root} is not a git checkout")
    for name in names:
        if (root / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, target / name)
    return target
