"""Choosing the format from a suffix or an explicit ``format`` argument."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiprod_pipelines.video_io import VideoIOError
from aiprod_pipelines.video_io.formats import resolve_read_format, resolve_write_format


def test_video_io_error_is_a_value_error() -> None:
    assert issubclass(VideoIOError, ValueError)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("clip.mp4", "mp4"), ("CLIP.MP4", "mp4"), ("anim.gif", "gif"), ("frames", "png")],
)
def test_write_format_from_suffix(name: str, expected: str) -> None:
    assert resolve_write_format(Path(name), None) == expected


@pytest.mark.parametrize(("given", "expected"), [("MP4", "mp4"), (".gif", "gif"), ("png", "png")])
def test_explicit_write_format_overrides_suffix(given: str, expected: str) -> None:
    assert resolve_write_format(Path("out.bin"), given) == expected


def test_unsupported_write_suffix_names_file_and_choices() -> None:
    with pytest.raises(
        VideoIOError, match=r"clip\.webm: unsupported suffix '\.webm'.*\.mp4, \.gif"
    ):
        resolve_write_format(Path("clip.webm"), None)


def test_unknown_explicit_write_format() -> None:
    with pytest.raises(VideoIOError, match=r"unknown format 'avi'; expected one of mp4, gif, png"):
        resolve_write_format(Path("clip"), "avi")


@pytest.mark.parametrize("suffix", ["mp4", "mov", "webm", "mkv", "avi", "gif"])
def test_read_format_from_suffix(suffix: str) -> None:
    assert resolve_read_format(Path(f"clip.{suffix.upper()}"), None) == suffix


def test_explicit_read_format_overrides_suffix() -> None:
    assert resolve_read_format(Path("download.bin"), ".MKV") == "mkv"


def test_unknown_explicit_read_format() -> None:
    with pytest.raises(VideoIOError, match=r"download\.bin: unknown video format 'flv'"):
        resolve_read_format(Path("download.bin"), "flv")


@pytest.mark.parametrize("name", ["still.png", "photo.JPG", "photo.jpeg"])
def test_reading_an_image_as_video_points_to_read_image(name: str) -> None:
    with pytest.raises(VideoIOError, match=r"still image; use read_image\(\)"):
        resolve_read_format(Path(name), None)


def test_unsupported_read_suffix_lists_supported_ones() -> None:
    with pytest.raises(VideoIOError, match=r"notes\.txt: unsupported video suffix '\.txt'.*\.mp4"):
        resolve_read_format(Path("notes.txt"), None)
