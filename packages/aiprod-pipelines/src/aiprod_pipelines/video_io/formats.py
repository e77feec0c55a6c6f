"""Which file formats video IO reads and writes, chosen from a suffix or a format name."""

from __future__ import annotations

import re
from pathlib import Path

from aiprod_pipelines.video_io.errors import VideoIOError

#: Formats :func:`~aiprod_pipelines.video_io.write_video` can write. ``"png"`` is a folder
#: of ``frame_00000.png`` files; the other two are single files.
WRITE_FORMATS: tuple[str, ...] = ("mp4", "gif", "png")

#: Video formats :func:`~aiprod_pipelines.video_io.read_video` reads, mapped to the
#: FFmpeg demuxer that PyAV is told to use, so a mislabelled file fails loudly.
READ_DEMUXERS: dict[str, str] = {
    "mp4": "mp4",
    "mov": "mov",
    "webm": "webm",
    "mkv": "matroska",
    "avi": "avi",
    "gif": "gif",
}

#: Name of frame ``i`` in a PNG frame folder; :data:`FRAME_NAME_PATTERN` matches it back.
FRAME_NAME = "frame_{index:05d}.png"
FRAME_NAME_PATTERN = re.compile(r"frame_(\d{5,})\.png")

#: Still-image suffixes :func:`~aiprod_pipelines.video_io.read_image` accepts.
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")


def _suffix_format(path: Path) -> str:
    return path.suffix.lower().removeprefix(".")


def resolve_write_format(path: Path, format: str | None) -> str:
    """Return the format to write ``path`` in: ``format`` if given, else from the suffix.

    A path without a suffix means a folder of PNG frames.
    """
    if format is not None:
        chosen = format.lower().removeprefix(".")
        if chosen not in WRITE_FORMATS:
            raise VideoIOError(
                f"cannot write {path}: unknown format {format!r}; expected one of "
                f"{', '.join(WRITE_FORMATS)}"
            )
        return chosen
    suffix = _suffix_format(path)
    if suffix == "":
        return "png"
    if suffix in ("mp4", "gif"):
        return suffix
    raise VideoIOError(
        f"cannot write {path}: unsupported suffix {path.suffix!r}; expected .mp4, .gif, "
        "or a folder path without a suffix for PNG frames (or pass format=...)"
    )


def resolve_read_format(path: Path, format: str | None) -> str:
    """Return the video format to read ``path`` as: ``format`` if given, else the suffix."""
    expected = ", ".join(f".{name}" for name in READ_DEMUXERS)
    if format is not None:
        chosen = format.lower().removeprefix(".")
        if chosen not in READ_DEMUXERS:
            raise VideoIOError(
                f"cannot read {path}: unknown video format {format!r}; expected one of "
                f"{', '.join(READ_DEMUXERS)}"
            )
        return chosen
    suffix = _suffix_format(path)
    if suffix in READ_DEMUXERS:
        return suffix
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise VideoIOError(
            f"cannot read {path} as a video: it is a still image; use read_image() instead"
        )
    raise VideoIOError(
        f"cannot read {path}: unsupported video suffix {path.suffix!r}; expected one of "
        f"{expected} (or pass format=...)"
    )
