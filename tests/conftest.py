"""Fixtures for the tests of the repository's own tooling (scripts/ and noxfile.py).

Scripts are single files with a PEP 723 header, not an installed package; tests load them
by path with importlib, so no sys.path manipulation is needed.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPTS_DIR = REPO_ROOT / "scripts"


def load_module(path: Path, name: str) -> ModuleType:
    """Import the Python file at ``path`` as a module called ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def load_script() -> Callable[[str], ModuleType]:
    """Load ``scripts/<category>/<name>.py`` by its path relative to scripts/."""

    def _load(relative: str) -> ModuleType:
        path = SCRIPTS_DIR / relative
        name = "aiprod_script_" + relative.removesuffix(".py").replace("/", "_")
        return load_module(path, name)

    return _load


@pytest.fixture(scope="session")
def noxfile() -> ModuleType:
    """The repository's noxfile.py, imported as a module (its helpers are plain functions)."""
    return load_module(REPO_ROOT / "noxfile.py", "aiprod_noxfile")


def lock_text(*packages: tuple[str, str, str]) -> str:
    """A ``uv.lock`` text of ``(name, version, source)`` packages.

    A source with ``://`` or a leading ``/`` is a registry; anything else is an editable
    workspace folder.
    """
    blocks = ["version = 1\n"]
    for name, version, source in packages:
        kind = "registry" if "://" in source or source.startswith("/") else "editable"
        blocks.append(
            f'[[package]]\nname = "{name}"\nversion = "{version}"\nsource = {{ {kind} = "{source}" }}\n'
        )
    return "\n".join(blocks)


@pytest.fixture(scope="session")
def uv_lock_text() -> Callable[..., str]:
    """Build a ``uv.lock`` text from ``(name, version, source)`` tuples."""
    return lock_text
