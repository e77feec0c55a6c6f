"""Read videos (PyAV), still images (Pillow) and folders of PNG frames back as uint8 RGB.

Every reader returns channels-last uint8 RGB: ``(T, H, W, 3)`` for videos, ``(H, W, 3)``
for images. Grey and palette images are expanded to RGB, alpha channels are dropped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np
from PIL import Image

from aiprod_pipelines.video_io.errors import VideoIOError
from aiprod_pipelines.video_io.formats import (
    FRAME_NAME,
    FRAME_NAME_PATTERN,
    IMAGE_SUFFIXES,
    READ_DEMUXERS,
    resolve_read_format,
)
from aiprod_pipelines.video_io.frames import Uint8Frames

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class VideoMetadata:
    """What :func:`read_video` learnt about a file besides its pixels."""

    path: Path
    #: the format read as, e.g. ``"mp4"`` or ``"gif"``
    format: str
    #: the decoder's codec name, e.g. ``"h264"``
    codec: str
    width: int
    height: int
    #: frames decoded (a GIF's merged identical frames count once)
    frame_count: int
    #: frame rate as stored, exact (``30000/1001`` for NTSC)
    fps: Fraction
    #: playing time in seconds
    duration_s: float


def _existing_file(path: Path, expected: str) -> None:
    if not path.exists():
        raise VideoIOError(f"cannot read {path}: no such file; expected {expected}")
    if not path.is_file():
        raise VideoIOError(f"cannot read {path}: it is not a file; expected {expected}")


def read_video(
    path: PathLike, *, format: str | None = None
) -> tuple[Uint8Frames, float, VideoMetadata]:
    """Decode every frame of a video file with PyAV.

    Args:
        path: an ``.mp4``, ``.mov``, ``.webm``, ``.mkv``, ``.avi`` or ``.gif`` file.
        format: one of those names, to read a file whose suffix says otherwise.

    Returns:
        ``(frames, fps, metadata)``: uint8 RGB frames ``(T, H, W, 3)``, frames per second
        as a float, and :class:`VideoMetadata` (with the exact fraction).

    Raises:
        VideoIOError: unsupported suffix, missing or unreadable file, no video stream,
            no frames, or fewer frames than the container declares (a truncated file).
    """
    source = Path(path)
    if source.is_dir():
        raise VideoIOError(
            f"cannot read {source} as a video: it is a folder; use read_png_frames() for a "
            "folder of PNG frames"
        )
    chosen = resolve_read_format(source, format)
    expected = f"a video file in {chosen} format"
    _existing_file(source, expected)
    try:
        with av.open(str(source), mode="r", format=READ_DEMUXERS[chosen]) as container:
            frames, metadata = _decode(container, source, chosen)
    except av.error.FFmpegError as exc:
        raise VideoIOError(
            f"cannot read {source}: not a readable {chosen} file ({exc.strerror or exc}); "
            f"expected {expected}"
        ) from exc
    return frames, float(metadata.fps), metadata


def _decode(
    container: av.container.InputContainer, source: Path, chosen: str
) -> tuple[Uint8Frames, VideoMetadata]:
    if not container.streams.video:
        raise VideoIOError(f"cannot read {source}: it holds no video stream")
    stream = container.streams.video[0]
    decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    if not decoded:
        raise VideoIOError(f"cannot read {source}: the video stream holds no frames")
    declared = stream.frames
    if declared and len(decoded) < declared:
        raise VideoIOError(
            f"cannot read {source}: the file is truncated or corrupt; the container "
            f"declares {declared} frames but only {len(decoded)} could be decoded"
        )
    frames = np.stack(decoded, dtype=np.uint8)
    fps = _frame_rate(stream, container, len(decoded), source)
    duration_s = (
        container.duration / av.time_base if container.duration else len(decoded) / float(fps)
    )
    metadata = VideoMetadata(
        path=source,
        format=chosen,
        codec=stream.codec_context.name,
        width=int(frames.shape[2]),
        height=int(frames.shape[1]),
        frame_count=len(decoded),
        fps=fps,
        duration_s=float(duration_s),
    )
    return frames, metadata


def _frame_rate(
    stream: av.video.stream.VideoStream,
    container: av.container.InputContainer,
    count: int,
    source: Path,
) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate:
            return Fraction(rate)
    if container.duration:
        return Fraction(count * av.time_base, container.duration)
    raise VideoIOError(f"cannot read {source}: the file stores no frame rate or duration")


def read_image(path: PathLike) -> Uint8Frames:
    """Read a PNG or JPEG with Pillow as uint8 RGB ``(H, W, 3)``.

    Raises:
        VideoIOError: unsupported suffix, missing, unreadable or truncated file.
    """
    source = Path(path)
    expected = "a PNG or JPEG image"
    if source.suffix.lower() not in IMAGE_SUFFIXES:
        raise VideoIOError(
            f"cannot read {source}: unsupported image suffix {source.suffix!r}; expected "
            f"one of {', '.join(IMAGE_SUFFIXES)}"
        )
    _existing_file(source, expected)
    try:
        with Image.open(source) as image:
            if image.format not in ("PNG", "JPEG"):
                raise VideoIOError(
                    f"cannot read {source}: it is a {image.format} image; expected {expected}"
                )
            return _rgb_pixels(image)
    except (OSError, Image.DecompressionBombError) as exc:
        raise VideoIOError(f"cannot read {source}: {exc}; expected {expected}") from exc


def _rgb_pixels(image: Image.Image) -> Uint8Frames:
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8).copy()


def read_png_frames(folder: PathLike) -> Uint8Frames:
    """Read a folder written by ``write_png_frames`` as uint8 RGB ``(T, H, W, 3)``.

    Files not named ``frame_NNNNN.png`` are ignored. The frames must be numbered from
    0 without gaps and all have the same size.

    Raises:
        VideoIOError: missing folder, no frames, a gap in the numbering, a frame of
            another size, or an unreadable frame.
    """
    source = Path(folder)
    if not source.is_dir():
        state = "it is not a folder" if source.exists() else "no such folder"
        raise VideoIOError(f"cannot read {source}: {state}; expected a folder of PNG frames")
    numbered: dict[int, Path] = {}
    for entry in source.iterdir():
        match = FRAME_NAME_PATTERN.fullmatch(entry.name)
        if match is not None:
            numbered[int(match.group(1))] = entry
    if not numbered:
        raise VideoIOError(
            f"cannot read {source}: no frames found; expected files named "
            f"{FRAME_NAME.format(index=0)}, {FRAME_NAME.format(index=1)}, ..."
        )
    frames: list[Uint8Frames] = []
    for index in range(len(numbered)):
        if index not in numbered:
            raise VideoIOError(
                f"cannot read {source}: {FRAME_NAME.format(index=index)} is missing; "
                f"expected frames numbered 0..{len(numbered) - 1} without gaps"
            )
        pixels = read_image(numbered[index])
        if frames and pixels.shape != frames[0].shape:
            raise VideoIOError(
                f"cannot read {numbered[index]}: frame size {pixels.shape[1]}x"
                f"{pixels.shape[0]} differs from the first frame's "
                f"{frames[0].shape[1]}x{frames[0].shape[0]}"
            )
        frames.append(pixels)
    return np.stack(frames)
