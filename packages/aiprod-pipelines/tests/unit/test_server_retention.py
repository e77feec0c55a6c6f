"""Retention: which videos expire or exceed the count, and deleting them from a store."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from aiprod_pipelines.server.retention import (
    delete_expired,
    delete_keys,
    expired,
    expires_at,
    over_limit,
)
from aiprod_pipelines.server.storage import LocalStorage

NOW = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
FRAMES = np.zeros((2, 16, 16, 3), dtype=np.uint8)


def test_a_video_expires_ttl_seconds_after_its_job_finished() -> None:
    assert expires_at(NOW, 86400) == datetime(2026, 2, 1, 12, 0, tzinfo=UTC)
    assert expires_at(NOW, 0.5) == NOW + timedelta(milliseconds=500)
    with pytest.raises(ValueError, match="ttl_seconds must be >= 0, got -1"):
        expires_at(NOW, -1)


def test_expired_keys_come_earliest_first_and_the_boundary_counts() -> None:
    pairs = [
        ("later.mp4", NOW + timedelta(seconds=1)),
        ("now.mp4", NOW),
        ("old.mp4", NOW - timedelta(days=2)),
        ("older.mp4", NOW - timedelta(days=3)),
    ]
    assert expired(pairs, NOW) == ["older.mp4", "old.mp4", "now.mp4"]
    assert expired(dict(pairs), NOW) == ["older.mp4", "old.mp4", "now.mp4"]
    assert expired(pairs, NOW - timedelta(days=10)) == []
    assert expired([], NOW) == []


def test_over_limit_names_the_oldest_beyond_keep() -> None:
    oldest_first = ["a.mp4", "b.mp4", "c.mp4", "d.mp4"]
    assert over_limit(oldest_first, 3) == ["a.mp4"]
    assert over_limit(oldest_first, 1) == ["a.mp4", "b.mp4", "c.mp4"]
    assert over_limit(oldest_first, 4) == []
    assert over_limit(oldest_first, 10) == []
    assert over_limit(oldest_first, 0) == oldest_first
    with pytest.raises(ValueError, match="keep must be >= 0, got -1"):
        over_limit(oldest_first, -1)


def test_delete_expired_removes_exactly_the_expired_videos(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    for job_id in ("old", "fresh", "due"):
        storage.write(job_id, FRAMES, 8)
    expiry = {
        "old.mp4": NOW - timedelta(hours=1),
        "fresh.mp4": NOW + timedelta(hours=1),
        "due.mp4": NOW,
        "gone.mp4": NOW - timedelta(hours=2),  # deleted earlier: counts as deleted
    }
    assert delete_expired(storage, expiry, now=NOW) == ["gone.mp4", "old.mp4", "due.mp4"]
    assert storage.keys() == ["fresh.mp4"]


def test_delete_expired_defaults_to_the_current_time(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.write("past", FRAMES, 8)
    storage.write("future", FRAMES, 8)
    now = datetime.now(UTC)
    expiry = [("past.mp4", now - timedelta(seconds=1)), ("future.mp4", now + timedelta(hours=1))]
    assert delete_expired(storage, expiry) == ["past.mp4"]
    assert storage.keys() == ["future.mp4"]


class FlakyStorage(LocalStorage):
    """A local store whose delete fails for one key."""

    def delete(self, key: str) -> None:
        if key == "stuck.mp4":
            raise PermissionError("permission denied")
        super().delete(key)


def test_a_failed_deletion_is_logged_and_left_for_the_next_sweep(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = FlakyStorage(tmp_path)
    for job_id in ("a", "stuck", "b"):
        storage.write(job_id, FRAMES, 8)
    with caplog.at_level(logging.WARNING, logger="aiprod_pipelines.server.retention"):
        deleted = delete_keys(storage, ["a.mp4", "stuck.mp4", "../evil.mp4", "b.mp4"])
    assert deleted == ["a.mp4", "b.mp4"]
    assert storage.keys() == ["stuck.mp4"]
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        f"retention: cannot delete stuck.mp4 from {tmp_path}: permission denied",
        (
            f"retention: cannot delete ../evil.mp4 from {tmp_path}: invalid video key "
            "'../evil.mp4': expected a file name of letters, digits, '.', '_' and '-' (no "
            "path separators, no '..', not starting with '.')"
        ),
    ]
