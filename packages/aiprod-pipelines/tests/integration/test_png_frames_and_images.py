"""Folders of PNG frames (lossless round trips) and single images read with Pillow."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from aiprod_pipelines.video_io import (
    VideoIOError,
    read_image,
    read_png_frames,
    to_uint8_frames,
    write_png_frames,
    write_video,
)

pytestmark = pytest.mark.integration


def test_png_frames_round_trip_exactly(
    tmp_path: Path, smooth_clip: np.ndarray, leftovers: Callable[[Path], list[str]]
) -> None:
    folder = write_video(tmp_path / "frames", smooth_clip, fps=24)
    names = sorted(entry.name for entry in folder.iterdir())
    assert names == [f"frame_{index:05d}.png" for index in range(12)]
    np.testing.assert_array_equal(read_png_frames(folder), to_uint8_frames(smooth_clip))
    assert leftovers(tmp_path) == []


def test_explicit_png_format_for_a_folder_name_with_a_dot(
    tmp_path: Path, palette_clip: np.ndarray
) -> None:
    folder = write_video(tmp_path / "run.v2", palette_clip, fps=24, format="png")
    np.testing.assert_array_equal(read_png_frames(folder), palette_clip)


def test_grey_frames_are_grey_pngs_and_rgba_keeps_alpha(tmp_path: Path) -> None:
    grey = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4, 1) * 10
    folder = write_png_frames(tmp_path / "grey", grey)
    with Image.open(folder / "frame_00001.png") as image:
        assert image.mode == "L"
    np.testing.assert_array_equal(read_png_frames(folder), np.repeat(grey, 3, axis=-1))

    rgba = np.zeros((1, 2, 2, 4), dtype=np.uint8)
    rgba[..., 1] = 99
    rgba[..., 3] = [[0, 255], [128, 7]]
    folder = write_png_frames(tmp_path / "rgba", rgba)
    with Image.open(folder / "frame_00000.png") as image:
        assert image.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(image), rgba[0])
    assert read_png_frames(folder).shape == (1, 2, 2, 3)


def test_rewriting_a_frames_folder_drops_old_frames(
    tmp_path: Path, palette_clip: np.ndarray, leftovers: Callable[[Path], list[str]]
) -> None:
    folder = write_png_frames(tmp_path / "frames", palette_clip)
    write_png_frames(folder, palette_clip[:2])
    assert len(list(folder.iterdir())) == 2
    np.testing.assert_array_equal(read_png_frames(folder), palette_clip[:2])
    assert leftovers(tmp_path) == []


def test_folder_with_other_files_is_not_replaced(tmp_path: Path, palette_clip: np.ndarray) -> None:
    folder = tmp_path / "shots"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep")
    with pytest.raises(
        VideoIOError, match=r"shots: the folder already holds files that are not frames"
    ):
        write_png_frames(folder, palette_clip)
    assert [entry.name for entry in folder.iterdir()] == ["notes.txt"]


def test_read_png_frames_ignores_unrelated_files(tmp_path: Path, palette_clip: np.ndarray) -> None:
    folder = write_png_frames(tmp_path / "frames", palette_clip[:2])
    (folder / "thumbnail.png").write_bytes(b"not a frame")
    assert read_png_frames(folder).shape == (2, 20, 24, 3)


def test_read_png_frames_errors(tmp_path: Path, palette_clip: np.ndarray) -> None:
    with pytest.raises(VideoIOError, match=r"missing: no such folder; expected a folder of PNG"):
        read_png_frames(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(VideoIOError, match=r"file: it is not a folder"):
        read_png_frames(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        VideoIOError, match=r"empty: no frames found; expected files named frame_00000\.png"
    ):
        read_png_frames(tmp_path / "empty")

    gap = write_png_frames(tmp_path / "gap", palette_clip[:3])
    (gap / "frame_00001.png").unlink()
    with pytest.raises(
        VideoIOError, match=r"gap: frame_00001\.png is missing; expected frames numbered 0\.\.1"
    ):
        read_png_frames(gap)

    mixed = write_png_frames(tmp_path / "mixed", palette_clip[:2])
    Image.fromarray(palette_clip[0, :10]).save(mixed / "frame_00001.png")
    with pytest.raises(
        VideoIOError,
        match=r"frame_00001\.png: frame size 24x10 differs from the first frame's 24x20",
    ):
        read_png_frames(mixed)

    broken = write_png_frames(tmp_path / "broken", palette_clip[:2])
    (broken / "frame_00000.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(VideoIOError, match=r"broken/frame_00000\.png"):
        read_png_frames(broken)


def test_committed_reference_png(clips: ModuleType) -> None:
    pixels = read_image(clips.REFERENCE_PNG)
    assert pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, clips.reference_image())


def test_read_image_converts_modes_to_rgb(tmp_path: Path) -> None:
    grey = np.array([[0, 100], [200, 255]], dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    np.testing.assert_array_equal(
        read_image(tmp_path / "grey.png"), np.repeat(grey[..., None], 3, -1)
    )

    palette = Image.new("P", (2, 1))
    palette.putpalette([10, 20, 30, 40, 50, 60])
    palette.putdata([0, 1])
    palette.save(tmp_path / "pal.png", transparency=0)
    assert read_image(tmp_path / "pal.png").tolist() == [[[10, 20, 30], [40, 50, 60]]]

    rgba = np.zeros((1, 1, 4), dtype=np.uint8)
    rgba[..., :3] = [1, 2, 3]
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    assert read_image(tmp_path / "rgba.png").tolist() == [[[1, 2, 3]]]


def test_read_image_jpeg_is_close(tmp_path: Path) -> None:
    pixels = np.full((16, 16, 3), (40, 120, 200), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.JPG", quality=95)
    decoded = read_image(tmp_path / "photo.JPG")
    assert decoded.shape == (16, 16, 3)
    assert np.abs(decoded.astype(int) - pixels).max() <= 3


def test_read_image_errors(tmp_path: Path, clips: ModuleType) -> None:
    with pytest.raises(
        VideoIOError,
        match=r"still\.webp: unsupported image suffix '\.webp'; expected one of \.png, \.jpg, \.jpeg",
    ):
        read_image(tmp_path / "still.webp")
    with pytest.raises(
        VideoIOError, match=r"nope\.png: no such file; expected a PNG or JPEG image"
    ):
        read_image(tmp_path / "nope.png")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(VideoIOError, match=r"dir\.png: it is not a file"):
        read_image(tmp_path / "dir.png")

    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(VideoIOError, match=r"text\.png: cannot identify image file"):
        read_image(tmp_path / "text.png")

    Image.fromarray(clips.reference_image()).save(tmp_path / "really.gif.png", format="GIF")
    with pytest.raises(
        VideoIOError, match=r"really\.gif\.png: it is a GIF image; expected a PNG or JPEG"
    ):
        read_image(tmp_path / "really.gif.png")

    big = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(big).save(tmp_path / "cut.png")
    data = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoIOError, match=r"cut\.png: .*truncated"):
        read_image(tmp_path / "cut.png")
