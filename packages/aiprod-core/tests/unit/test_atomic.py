"""Atomic writes leave the old file or the new one, never a partial file or a temp file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aiprod_core.atomic import atomic_path, atomic_write_bytes, atomic_write_text


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(".")]


def test_write_text_creates_parents_and_content(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.txt"
    atomic_write_text(target, "héllo\n")
    assert target.read_bytes() == "héllo\n".encode()
    assert leftovers(target.parent) == []


def test_replacing_keeps_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    target.write_bytes(b"old")
    target.chmod(0o640)
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o640


def test_new_file_follows_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "f", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_failure_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    target = tmp_path / "keep.txt"
    target.write_text("previous")

    def fail(*args: object) -> None:
        raise OSError(f"{failing} failed")

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(OSError, match=f"{failing} failed"):
        atomic_write_text(target, "next")
    monkeypatch.undo()
    assert target.read_text() == "previous"
    assert leftovers(tmp_path) == []


def test_interrupt_inside_atomic_path(tmp_path: Path) -> None:
    target = tmp_path / "video.mp4"
    target.write_bytes(b"good")
    seen: list[Path] = []

    def write_half_then_stop() -> None:
        with atomic_path(target, suffix=".mp4") as temp:
            seen.append(temp)
            temp.write_bytes(b"half")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_half_then_stop()
    assert seen[0].name.endswith(".tmp.mp4")
    assert seen[0].parent == tmp_path
    assert target.read_bytes() == b"good"
    assert leftovers(tmp_path) == []


def test_atomic_path_requires_the_writer_to_create_the_file(tmp_path: Path) -> None:
    target = tmp_path / "x.bin"

    def write_nothing() -> None:
        with atomic_path(target):
            return

    with pytest.raises(FileNotFoundError, match="did not create the file"):
        write_nothing()
    assert not target.exists()


def test_folder_fsync_failure_is_tolerated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def no_folders(path: object, flags: int, *args: object) -> int:
        if Path(str(path)).is_dir():
            raise OSError("folders cannot be opened here")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", no_folders)
    atomic_write_text(tmp_path / "t.txt", "ok")
    monkeypatch.undo()
    assert (tmp_path / "t.txt").read_text() == "ok"
