"""OutputStore: where finished videos go and how many are kept."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

from aiprod_pipelines.server.outputs import OutputStore


def test_keep_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep must be >= 1"):
        OutputStore(tmp_path, keep=0)


def test_prepare_creates_the_folder_and_adopts_videos_oldest_first(tmp_path: Path) -> None:
    folder = tmp_path / "outputs" / "server"
    store = OutputStore(folder, keep=2)
    assert store.prepare() == []
    assert folder.is_dir()
    for age, name in enumerate(["new.mp4", "mid.mp4", "old.mp4"]):
        path = folder / name
        path.write_bytes(b"x")
        os.utime(path, (1_000_000 - age * 10, 1_000_000 - age * 10))
    (folder / ".partial.mp4.tmp.mp4").write_bytes(b"temp")
    (folder / "clip.gif").write_bytes(b"gif")

    assert OutputStore(folder, keep=2).prepare() == [folder / "old.mp4"]
    assert sorted(p.name for p in folder.iterdir()) == [
        ".partial.mp4.tmp.mp4",
        "clip.gif",
        "mid.mp4",
        "new.mp4",
    ]


def test_write_then_add_applies_the_limit(tmp_path: Path) -> None:
    store = OutputStore(tmp_path, keep=1)
    store.prepare()
    frames = np.zeros((3, 16, 16, 3), np.uint8)
    first = store.write("a", frames, fps=8)
    assert first == tmp_path / "a.mp4"
    assert first.stat().st_size > 0
    assert store.add(first) == []
    second = store.write("b", frames, fps=8)
    assert store.add(second) == [first]
    assert not first.exists()
    assert len(store) == 1


def test_discard_forgets_and_deletes(tmp_path: Path) -> None:
    store = OutputStore(tmp_path, keep=3)
    kept = tmp_path / "kept.mp4"
    kept.write_bytes(b"x")
    store.add(kept)
    store.discard(kept)
    store.discard(tmp_path / "never-there.mp4")
    assert not kept.exists()
    assert len(store) == 0


def test_a_file_that_cannot_be_deleted_is_logged_and_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = OutputStore(tmp_path, keep=1)
    stuck = tmp_path / "stuck.mp4"
    stuck.mkdir()  # unlink() of a folder fails
    (stuck / "inside").write_bytes(b"x")
    store.add(stuck)
    with caplog.at_level(logging.WARNING, logger="aiprod_pipelines.server.outputs"):
        assert store.add(tmp_path / "next.mp4") == [stuck]
    assert "cannot delete" in caplog.text
    assert len(store) == 1
