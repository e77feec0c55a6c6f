"""Shared fixtures for aiprod-trainer's tests: the fixture folder and small manifest builders."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from aiprod_trainer import ManifestRecord

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The folder of committed test data (``valid.jsonl``, ``invalid.jsonl``)."""
    return FIXTURES


@pytest.fixture
def record_data() -> Callable[..., dict[str, Any]]:
    """Build the JSON object of a valid record; keyword arguments override fields."""

    def build(**overrides: Any) -> dict[str, Any]:
        data: dict[str, Any] = {
            "media": "clips/clip.mp4",
            "caption": "a clip",
            "width": 768,
            "height": 512,
            "frames": 49,
            "fps": 24,
        }
        data.update(overrides)
        return data

    return build


@pytest.fixture
def make_record(record_data: Callable[..., dict[str, Any]]) -> Callable[..., ManifestRecord]:
    """Build a valid :class:`ManifestRecord`; keyword arguments override fields."""

    def build(**overrides: Any) -> ManifestRecord:
        return ManifestRecord(**record_data(**overrides))

    return build


@pytest.fixture
def write_lines(tmp_path: Path) -> Callable[[Sequence[str]], Path]:
    """Write raw lines (newline-terminated) to ``tmp_path/train.jsonl`` and return its path."""

    def write(lines: Sequence[str]) -> Path:
        path = tmp_path / "train.jsonl"
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        return path

    return write
