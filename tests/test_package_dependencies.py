"""Each package imports only what it declares, and the dependency direction holds.

The nox test environments enforce this at run time (each holds one package and what it
declares); this test says which import is undeclared before any environment is built.

The pipelines' HTTP server is an extra (``aiprod-pipelines[server]``): only its folder may
import the extra's distributions, nothing outside it imports it (so ``aiprod-generate``
runs without it), and the trainer, which installs the pipelines without the extra, neither
reaches the server's code nor gets FastAPI or uvicorn from the lock.
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
#: Extras whose distributions only one folder of a package may import.
EXTRA_FOLDERS = {"aiprod-pipelines": {"server": "src/aiprod_pipelines/server/"}}
#: The server's own package, and the entry point that imports it once the extra is checked.
SERVER_PACKAGE = "aiprod_pipelines.server"
SERVER_ENTRY = "aiprod_pipelines.serve"
#: The web stack that only the server extra installs.
WEB_STACK = {"fastapi", "starlette", "uvicorn", "prometheus-client"}
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


def declared(package: Path, extras: tuple[str, ...] = ()) -> set[str]:
    """The distributions ``package`` declares, with those of its ``extras``."""
    project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
    optional = project.get("optional-dependencies", {})
    names = set()
    for requirement in [
        *project.get("dependencies", []),
        *(r for e in extras for r in optional[e]),
    ]:
        match = re.match(r"[A-Za-z0-9._-]+", requirement)
        assert match, requirement
        names.add(normalize(match.group(0)))
    return names


def allowed(package: Path, file: str) -> set[str]:
    """What ``file`` (relative to the package) may import: the dependencies, and the extras
    of the folder it lies in."""
    extras = tuple(
        extra
        for extra, folder in EXTRA_FOLDERS.get(package.name, {}).items()
        if file.startswith(folder)
    )
    return declared(package, extras)


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
        dist: outside
        for dist, files in imported_distributions(package).items()
        if (outside := [file for file in files if dist not in allowed(package, file)])
    }
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


def test_an_extra_covers_only_its_folder(tmp_path: Path) -> None:
    package = tmp_path / "aiprod-pipelines"
    (package / "src" / "aiprod_pipelines" / "server").mkdir(parents=True)
    (package / "pyproject.toml").write_text(
        '[project]\nname = "aiprod-pipelines"\ndependencies = ["numpy"]\n'
        '[project.optional-dependencies]\nserver = ["fastapi>=0.110"]\n'
    )
    assert declared(package) == {"numpy"}
    assert declared(package, ("server",)) == {"numpy", "fastapi"}
    assert "fastapi" in allowed(package, "src/aiprod_pipelines/server/app.py")
    assert "fastapi" not in allowed(package, "src/aiprod_pipelines/cli/images.py")


# --- the server extra: who reaches the server's code, and what the lock installs ---------


def module_files() -> dict[str, Path]:
    """Every module of the workspace packages (dotted name) mapped to its file."""
    modules = {}
    for package in PACKAGES:
        src = package / "src"
        for path in src.rglob("*.py"):
            parts = path.relative_to(src).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def imported_modules(path: Path, modules: dict[str, Path]) -> set[str]:
    """The workspace modules ``path`` imports anywhere (in functions too), with the packages
    Python runs on the way (``a.b.c`` runs ``a`` and ``a.b`` first)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & set(modules)
    return found


def reachable(start: set[str], modules: dict[str, Path]) -> set[str]:
    """Every workspace module that importing the ``start`` modules can import."""
    seen: set[str] = set()
    pending = list(start)
    while pending:
        name = pending.pop()
        if name not in seen:
            seen.add(name)
            pending += imported_modules(modules[name], modules) - seen
    return seen


def test_nothing_the_trainer_imports_reaches_the_server() -> None:
    modules = module_files()
    trainer = {name for name in modules if name.split(".")[0] == "aiprod_trainer"}
    reached = reachable(trainer, modules)
    assert "aiprod_pipelines.video_io" in reached  # the walk does follow the pipelines
    server = sorted(
        name
        for name in reached
        if name in (SERVER_ENTRY, SERVER_PACKAGE) or name.startswith(SERVER_PACKAGE + ".")
    )
    assert server == [], f"the trainer reaches the server's code: {server}"
    web_files = {
        package / file
        for package in PACKAGES
        for dist, files in imported_distributions(package).items()
        if dist in WEB_STACK
        for file in files
    }
    assert web_files, "the server's files import the web stack"
    web = sorted(name for name in reached if modules[name] in web_files)
    assert web == [], f"modules the trainer reaches import the web stack: {web}"


def test_only_the_server_and_its_entry_point_import_the_server() -> None:
    modules = module_files()
    importers = sorted(
        name
        for name, path in modules.items()
        if not (name == SERVER_PACKAGE or name.startswith(SERVER_PACKAGE + "."))
        and SERVER_PACKAGE in imported_modules(path, modules)
    )
    assert importers == [SERVER_ENTRY]


def locked_closure(lock: dict, name: str, extras: tuple[str, ...] = ()) -> set[str]:
    """The distributions ``uv.lock`` installs for ``name`` with ``extras`` (on any platform)."""
    entries: dict[str, list[dict]] = {}
    for package in lock["package"]:
        entries.setdefault(package["name"], []).append(package)
    seen: set[tuple[str, str | None]] = set()
    pending: list[tuple[str, str | None]] = [(name, None), *((name, e) for e in extras)]
    while pending:
        key = pending.pop()
        if key in seen:
            continue
        seen.add(key)
        for entry in entries.get(key[0], []):
            if key[1] is None:
                dependencies = entry.get("dependencies", [])
            else:
                dependencies = entry.get("optional-dependencies", {}).get(key[1], [])
            for dependency in dependencies:
                pending.append((dependency["name"], None))
                pending += [(dependency["name"], extra) for extra in dependency.get("extra", [])]
    return {distribution for distribution, _ in seen}


def test_the_trainer_does_not_install_the_web_server() -> None:
    lock = tomllib.loads((REPO / "uv.lock").read_text(encoding="utf-8"))
    trainer = locked_closure(lock, "aiprod-trainer")
    assert "aiprod-pipelines" in trainer
    assert "torch" in trainer
    assert trainer & WEB_STACK == set(), "re-lock: nox -s maintenance -- lock_dependencies"
    assert locked_closure(lock, "aiprod-pipelines", ("server",)) >= WEB_STACK
    assert locked_closure(lock, "aiprod-pipelines") & WEB_STACK == set()


def test_the_image_installs_the_server_extra() -> None:
    dockerfile = (REPO / "deploy" / "docker" / "Dockerfile").read_text(encoding="utf-8")
    installs = re.sub(r"\\\n", " ", dockerfile)
    assert "./packages/aiprod-pipelines[server]" in installs
