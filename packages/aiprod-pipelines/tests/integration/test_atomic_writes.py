"""A write that fails part way leaves the previous good output and no temp files."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aiprod_pipelines.video_io import (
    VideoIOError,
    read_png_frames,
    read_video,
    write_gif,
    write_mp4,
    write_png_frames,
    writers,
)

pytestmark = pytest.mark.integration

Leftovers = Callable[[Path], list[str]]


def _disk_full() -> OSError:
    return OSError(28, "No space left on device")


def test_mp4_encoder_failure_keeps_previous_file(
    tmp_path: Path, smooth_clip: np.ndarray, monkeypatch: pytest.MonkeyPatch, leftovers: Leftovers
) -> None:
    target = write_mp4(tmp_path / "clip.mp4", smooth_clip, fps=24)
    before = target.read_bytes()
    real_encode = writers._encode_h264
    partial: list[int] = []

    def encode_then_fail(
        path: Path, frames: np.ndarray, rate: object, crf: int, threads: int = 0
    ) -> None:
        real_encode(path, frames[:2], rate, crf, threads)
        partial.append(path.stat().st_size)
        raise _disk_full()

    monkeypatch.setattr(writers, "_encode_h264", encode_then_fail)
    with pytest.raises(VideoIOError, match=r"clip\.mp4: H\.264 encoding failed \(.*No space left"):
        write_mp4(target, smooth_clip[:6], fps=12)
    assert partial[0] > 0
    assert target.read_bytes() == before
    assert read_video(target)[0].shape[0] == 12
    assert leftovers(tmp_path) == []


def test_mp4_interrupted_write_leaves_no_file(
    tmp_path: Path, smooth_clip: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(path: Path, *args: object, **kwargs: object) -> None:
        path.write_bytes(b"\x00\x00\x00\x18ftypisom")
        raise KeyboardInterrupt

    monkeypatch.setattr(writers, "_encode_h264", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_mp4(tmp_path / "clip.mp4", smooth_clip, fps=24)
    assert list(tmp_path.iterdir()) == []


def test_failed_final_rename_keeps_previous_file(
    tmp_path: Path, palette_clip: np.ndarray, monkeypatch: pytest.MonkeyPatch, leftovers: Leftovers
) -> None:
    target = write_gif(tmp_path / "anim.gif", palette_clip, fps=10)
    before = target.read_bytes()

    def refuse(self: Path, other: Path) -> Path:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "replace", refuse)
    with pytest.raises(
        VideoIOError, match=r"anim\.gif: cannot move the finished file into place \(.*Permission"
    ):
        write_gif(target, palette_clip[:2], fps=10)
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_gif_failure_mid_write_keeps_previous_file(
    tmp_path: Path, palette_clip: np.ndarray, monkeypatch: pytest.MonkeyPatch, leftovers: Leftovers
) -> None:
    target = write_gif(tmp_path / "anim.gif", palette_clip, fps=10)
    before = target.read_bytes()

    def half_save(self: Image.Image, fp: Path, *args: object, **kwargs: object) -> None:
        Path(fp).write_bytes(b"GIF89a" + b"\x00" * 10)
        raise _disk_full()

    monkeypatch.setattr(Image.Image, "save", half_save)
    with pytest.raises(VideoIOError, match=r"anim\.gif: GIF encoding failed \(.*No space left"):
        write_gif(target, palette_clip[::-1], fps=10)
    monkeypatch.undo()
    assert target.read_bytes() == before
    np.testing.assert_array_equal(read_video(target)[0], palette_clip)
    assert leftovers(tmp_path) == []


def test_png_frames_failure_mid_write_keeps_previous_folder(
    tmp_path: Path, palette_clip: np.ndarray, monkeypatch: pytest.MonkeyPatch, leftovers: Leftovers
) -> None:
    folder = write_png_frames(tmp_path / "frames", palette_clip)
    real_save = Image.Image.save
    saved: list[str] = []

    def fail_on_third(self: Image.Image, fp: Path, *args: object, **kwargs: object) -> None:
        if len(saved) == 2:
            raise _disk_full()
        saved.append(Path(fp).name)
        real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", fail_on_third)
    with pytest.raises(VideoIOError, match=r"frames: frame_00002\.png: .*No space left"):
        write_png_frames(folder, palette_clip[::-1])
    monkeypatch.undo()
    assert saved == ["frame_00000.png", "frame_00001.png"]
    np.testing.assert_array_equal(read_png_frames(folder), palette_clip)
    assert leftovers(tmp_path) == []


def test_png_frames_failed_swap_keeps_previous_folder(
    tmp_path: Path, palette_clip: np.ndarray, monkeypatch: pytest.MonkeyPatch, leftovers: Leftovers
) -> None:
    folder = write_png_frames(tmp_path / "frames", palette_clip)
    real_replace = Path.replace
    renames: list[tuple[str, str]] = []

    def fail_second_rename(self: Path, other: Path) -> Path:
        renames.append((self.name, Path(other).name))
        if len(renames) == 2:
            raise _disk_full()
        return real_replace(self, other)

    monkeypatch.setattr(Path, "replace", fail_second_rename)
    with pytest.raises(
        VideoIOError, match=r"frames: cannot move the finished folder into place \(.*No space left"
    ):
        write_png_frames(folder, palette_clip[:2])
    monkeypatch.undo()
    assert [new for _, new in renames][1:] == ["frames", "frames"]
    np.testing.assert_array_equal(read_png_frames(folder), palette_clip)
    assert leftovers(tmp_path) == []


def test_a_new_video_gets_default_permissions_and_a_replaced_one_keeps_its_own(
    tmp_path: Path, palette_clip: np.ndarray
) -> None:
    umask = os.umask(0o022)
    try:
        target = write_gif(tmp_path / "anim.gif", palette_clip, fps=10)
        assert target.stat().st_mode & 0o777 == 0o644
        target.chmod(0o600)
        write_gif(target, palette_clip[::-1], fps=10)
    finally:
        os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o600
    np.testing.assert_array_equal(read_video(target)[0], palette_clip[::-1])
