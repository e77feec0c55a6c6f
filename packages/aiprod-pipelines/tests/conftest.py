"""Fixtures for the aiprod-pipelines tests.

The helpers in ``fixtures/clips.py`` are loaded by path (tests run with
``--import-mode=importlib`` and are not a package) and handed to tests as fixtures.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"


def _load_clips() -> ModuleType:
    name = "aiprod_pipelines_test_clips"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, FIXTURES_DIR / "clips.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {FIXTURES_DIR / 'clips.py'}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


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
