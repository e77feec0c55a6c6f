"""The record model: which values a manifest line may hold."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from aiprod_trainer import ManifestRecord


def test_valid_record_keeps_values(record_data: Callable[..., dict[str, Any]]) -> None:
    record = ManifestRecord.model_validate(record_data(fps=23.976))

    assert record.media == "clips/clip.mp4"
    assert record.caption == "a clip"
    assert (record.width, record.height, record.frames) == (768, 512, 49)
    assert record.fps == pytest.approx(23.976)


def test_integer_fps_becomes_float(record_data: Callable[..., dict[str, Any]]) -> None:
    record = ManifestRecord.model_validate(record_data(fps=30))

    assert isinstance(record.fps, float)
    assert record.fps == 30.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("media", ""),
        ("media", "   "),
        ("media", 3),
        ("caption", ""),
        ("caption", "\t\n"),
        ("caption", None),
        ("width", 0),
        ("width", -5),
        ("width", 7.5),
        ("width", 768.0),
        ("width", "768"),
        ("height", True),
        ("frames", 0),
        ("fps", 0),
        ("fps", -24),
        ("fps", math.nan),
        ("fps", math.inf),
        ("fps", "24"),
        ("fps", False),
    ],
)
def test_invalid_value_is_rejected(
    record_data: Callable[..., dict[str, Any]], field: str, value: object
) -> None:
    with pytest.raises(ValidationError) as caught:
        ManifestRecord.model_validate(record_data(**{field: value}))

    assert [error["loc"] for error in caught.value.errors()] == [(field,)]


def test_unknown_field_is_rejected(record_data: Callable[..., dict[str, Any]]) -> None:
    with pytest.raises(ValidationError) as caught:
        ManifestRecord.model_validate(record_data(seed=7))

    assert [error["type"] for error in caught.value.errors()] == ["extra_forbidden"]


def test_record_is_frozen(make_record: Callable[..., ManifestRecord]) -> None:
    record = make_record()

    with pytest.raises(ValidationError):
        record.width = 1  # type: ignore[misc]
    assert record.width == 768
