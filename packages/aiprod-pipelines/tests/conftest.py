"""Fixtures for the aiprod-pipelines tests.

The helpers in ``fixtures/`` (``clips.py``, ``served_process.py``, ``postgres_server.py``) are loaded by path (tests run with
``--import-mode=importlib`` and are not a package) and handed to tests as fixtures.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"


def _load_fixture(stem: str) -> ModuleType:
    name = f"aiprod_pipelines_test_{stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, FIXTURES_DIR / f"{stem}.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {FIXTURES_DIR / f'{stem}.py'}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _load_clips() -> ModuleType:
    return _load_fixture("clips")


@pytest.fixture(scope="session")
def clips() -> ModuleType:
    """The ``fixtures/clips.py`` helper module (synthetic clips, reference data)."""
    return _load_clips()


@pytest.fixture
def smooth_clip(clips: ModuleType) -> np.ndarray:
    """float32 (12, 48, 64, 3) clip in [-1, 1] with smooth gradients."""
    return clips.smooth_clip()


@pytest.fixture
def palette_clip(clips: ModuleType) -> np.ndarray:
    """uint8 (6, 20, 24, 3) clip using eight colours, every frame different."""
    return clips.palette_clip()


@pytest.fixture
def leftovers() -> Callable[[Path], list[str]]:
    """Return the hidden temp files/folders atomic writes left in a folder (should be none)."""

    def _leftovers(folder: Path) -> list[str]:
        return sorted(entry.name for entry in folder.iterdir() if entry.name.startswith("."))

    return _leftovers


@pytest.fixture(scope="module")
def tiny() -> Any:
    """The tiny preset with random weights, per test module.

    An untrained transformer's output projection is zero (it predicts zero velocity and
    ignores the prompt), so it gets seeded random weights here, as in the core tests.
    """
    import torch

    from aiprod_pipelines.pipelines import load_model

    loaded = load_model(preset="tiny", random_weights=True, device="cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        torch.nn.init.normal_(loaded.model.transformer.final_proj.weight, std=0.5)
    return loaded


@pytest.fixture(scope="session")
def served_process() -> ModuleType:
    """The ``fixtures/served_process.py`` helper module (``aiprod-serve`` in a subprocess)."""
    return _load_fixture("served_process")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """A PostgreSQL server of the system's binaries on 127.0.0.1, for the whole session.

    Skipped with a reason when there are no binaries, failed instead with
    ``AIPROD_REQUIRE_POSTGRES=1`` (``.ci/run``): the PostgreSQL tests never pass silently.
    """
    module = _load_fixture("postgres_server")
    binaries = module.find_binaries()
    if binaries is None:
        if os.environ.get(module.REQUIRE_VARIABLE) == "1":
            pytest.fail(f"{module.SKIP_REASON} ({module.REQUIRE_VARIABLE}=1)")
        pytest.skip(module.SKIP_REASON)
    server = module.PostgresServer(binaries)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: Any) -> Iterator[str]:
    """The URL of a new, empty database on :func:`postgres_server`, dropped afterwards."""
    url: str = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)
