"""Shared fixtures for aiprod-core tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A writable copy of the fixture configuration: <tmp>/repo/config."""
    target = tmp_path / "repo" / "config"
    shutil.copytree(FIXTURES / "config", target)
    return target


@pytest.fixture
def repo_config_dir() -> Path:
    """The repository's own config/ folder."""
    return REPO_ROOT / "config"
