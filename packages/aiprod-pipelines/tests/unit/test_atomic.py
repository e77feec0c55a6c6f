"""The writers' atomic-write errors: one VideoIOError naming the target, nothing touched.

The atomic machinery itself (temp files and folders, fsync, swap and rollback) is
``aiprod_core.atomic`` and tested there; these tests check that the video writers use it
for every target kind and report its failures as :class:`VideoIOError`. Each failure
here happens before any frame is encoded.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from aiprod_core import atomic
from aiprod_pipelines.video_io import VideoIOError, write_gif, write_mp4, write_png_frames

RGB = np.zeros((2, 4, 6, 3), dtype=np.uint8)

FileWriter = Callable[[Path, np.ndarray], Path]


def _mp4(path: Path, video: np.ndarray) -> Path:
    return write_mp4(path, video, fps=24)


def _gif(path: Path, video: np.ndarray) -> Path:
    return write_gif(path, video, fps=10)


FILE_WRITERS = pytest.mark.parametrize(("write", "name"), [(_mp4, "out.mp4"), (_gif, "out.gif")])


@FILE_WRITERS
def test_a_file_writer_refuses_a_folder_target(
    tmp_path: Path, write: FileWriter, name: str
) -> None:
    target = tmp_path / name
    (target / "inside").mkdir(parents=True)
    with pytest.raises(VideoIOError, match=r"it is a folder; expected a file path") as caught:
        write(target, RGB)
    assert str(caught.value) == f"cannot write {target}: it is a folder; expected a file path"
    assert isinstance(caught.value.__cause__, IsADirectoryError)
    assert [entry.name for entry in target.iterdir()] == ["inside"]
    assert sorted(entry.name for entry in tmp_path.iterdir()) == [name]


@FILE_WRITERS
def test_a_file_writer_reports_a_parent_that_is_a_file(
    tmp_path: Path, write: FileWriter, name: str
) -> None:
    (tmp_path / "blocker").write_text("x")
    with pytest.raises(VideoIOError, match=rf"blocker/{name}: cannot create its folder \("):
        write(tmp_path / "blocker" / name, RGB)
    assert (tmp_path / "blocker").read_text() == "x"


@FILE_WRITERS
def test_a_file_writer_reports_an_unwritable_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write: FileWriter, name: str
) -> None:
    def refuse(*args: object, **kwargs: object) -> int:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(atomic.os, "open", refuse)
    with pytest.raises(VideoIOError, match=rf"cannot write .*{name}: .*Permission denied"):
        write(tmp_path / name, RGB)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_png_frames_refuse_a_file_target(tmp_path: Path) -> None:
    target = tmp_path / "frames"
    target.write_text("not a folder")
    with pytest.raises(VideoIOError, match=r"frames: it is a file; expected a folder path"):
        write_png_frames(target, RGB)
    assert target.read_text() == "not a folder"


def test_png_frames_refuse_a_folder_with_other_files(tmp_path: Path) -> None:
    target = tmp_path / "frames"
    target.mkdir()
    (target / "keep.me").write_text("precious")
    (target / "frame_00000.png").write_bytes(b"old frame")
    with pytest.raises(
        VideoIOError,
        match=(
            r"frames: the folder already holds files that are not frames \(keep\.me\); "
            r"expected an empty or new folder"
        ),
    ) as caught:
        write_png_frames(target, RGB)
    assert isinstance(caught.value.__cause__, FileExistsError)
    assert (target / "keep.me").read_text() == "precious"
    assert (target / "frame_00000.png").read_bytes() == b"old frame"


def test_png_frames_do_not_count_a_folder_named_like_a_frame_as_a_frame(tmp_path: Path) -> None:
    target = tmp_path / "frames"
    (target / "frame_00000.png").mkdir(parents=True)
    with pytest.raises(VideoIOError, match=r"files that are not frames \(frame_00000\.png\)"):
        write_png_frames(target, RGB)
    assert (target / "frame_00000.png").is_dir()


def test_png_frames_report_an_unwritable_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(path: object, *args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(atomic.Path, "mkdir", refuse)
    with pytest.raises(VideoIOError, match=r"frames: cannot create its folder \(.*Permission"):
        write_png_frames(tmp_path / "new" / "frames", RGB)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []
