"""Ingesting real videos: find them, probe them, filter them, and fit them to a bucket.

The steps data preparation takes for each file, each usable on its own:

* :func:`find_videos` lists the video files under a folder (``.mp4``, ``.webm``, ``.mov``,
  ``.avi``, ``.mkv``; the codec is whatever FFmpeg, through PyAV, decodes);
* :func:`probe_video` reads a file's size, frame count, frame rate and duration from its
  headers (counting packets when the container does not store a frame count), and notices
  a file shorter than its header claims;
* :class:`ClipFilter` says why a probed clip is too short, too long or too small;
* :func:`choose_bucket` picks the nearest allowed bucket the clip has enough frames for;
* :func:`decode_frames` decodes the whole stream, so that a file broken part way is
  noticed, and keeps the frames needed; :func:`fit_frames` resizes them to cover the
  bucket and crops the centre.

Every problem with a file raises :class:`IngestError`, whose message names the file and
says what was wrong, so a caller can list it and move on to the next file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import av.error
import numpy as np
import numpy.typing as npt
from PIL import Image

from aiprod_core.errors import AiprodError
from aiprod_trainer.data.buckets import Bucket, Shaped, nearest_bucket

Uint8Frames = npt.NDArray[np.uint8]

#: Suffixes :func:`find_videos` collects (compared case-insensitively).
VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".webm", ".mov", ".avi", ".mkv")

#: A file whose packets cover less than this share of the duration its header declares is
#: reported as truncated (audio tracks a little longer than the video stay below it).
TRUNCATION_THRESHOLD = 0.9

#: Errors PyAV and the OS raise for a file that cannot be read; PyAV's are ValueErrors.
_READ_ERRORS = (av.error.FFmpegError, OSError, ValueError)


class IngestError(AiprodError, ValueError):
    """A video file could not be probed or decoded; the message names it and says why.

    ``path`` is the file and ``reason`` the message without it, for reports that list
    files in a column of their own.
    """

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class VideoProbe:
    """What a video's headers say about it (frames counted when not stored)."""

    path: Path
    width: int
    height: int
    frames: int
    fps: Fraction
    codec: str

    @property
    def duration_s(self) -> float:
        """Playing time of the video stream in seconds: frames / fps."""
        return float(self.frames / self.fps)


def find_videos(folder: Path, *, exclude: Path | None = None) -> list[Path]:
    """Every video file under ``folder`` (recursively), sorted; nothing under ``exclude``.

    Hidden files and folders (names starting with ``.``) are skipped.
    """
    skip = exclude.resolve() if exclude is not None else None
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        dirs[:] = sorted(
            name
            for name in dirs
            if not name.startswith(".") and (skip is None or (here / name).resolve() != skip)
        )
        found.extend(
            here / name
            for name in files
            if not name.startswith(".") and Path(name).suffix.lower() in VIDEO_SUFFIXES
        )
    return sorted(found)


def probe_video(path: Path) -> VideoProbe:
    """Read ``path``'s first video stream's shape, frame rate and codec.

    Raises:
        IngestError: the file is missing, not a video, has no video stream or no frames,
            stores no frame rate, or holds fewer frames than its header declares.
    """
    _check_file(path)
    try:
        with av.open(str(path), mode="r") as container:
            return _probe(container, path)
    except IngestError:
        raise
    except _READ_ERRORS as exc:
        raise IngestError(path, f"not a readable video ({_reason(exc)})") from exc


def _check_file(path: Path) -> None:
    if not path.is_file():
        state = "not a file" if path.exists() else "no such file"
        raise IngestError(path, f"{state}; expected a video file")


def _probe(container: av.container.InputContainer, path: Path) -> VideoProbe:
    if not container.streams.video:
        raise IngestError(path, "holds no video stream; expected a video file")
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate
    if not rate:
        raise IngestError(path, "stores no frame rate; expected a constant-rate video")
    fps = Fraction(rate)
    declared = int(stream.frames or 0)
    if declared == 0:
        # Matroska and WebM store no frame count: count the packets (no decoding), and
        # compare with the duration the header declares to notice a cut-off file.
        declared = sum(1 for packet in container.demux(stream) if packet.size)
        expected = _declared_frames(container, stream, fps)
        if expected and declared < TRUNCATION_THRESHOLD * expected - 1:
            raise IngestError(
                path,
                f"truncated; the header declares {expected} frames but the file "
                f"holds only {declared}",
            )
    width, height = int(stream.codec_context.width), int(stream.codec_context.height)
    if declared <= 0 or width <= 0 or height <= 0:
        raise IngestError(path, f"the video stream is empty ({width}x{height}, {declared} frames)")
    return VideoProbe(path, width, height, declared, fps, stream.codec_context.name)


def _declared_frames(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, fps: Fraction
) -> int:
    """Frames the header's duration implies: the stream's duration, else the container's."""
    if stream.duration and stream.time_base:
        seconds = Fraction(stream.duration) * stream.time_base
    elif container.duration:
        seconds = Fraction(container.duration, av.time_base)
    else:
        return 0
    return round(seconds * fps)


def _reason(exc: BaseException) -> str:
    """A short reason for a read error, without PyAV's repeated file name."""
    if isinstance(exc, av.error.FFmpegError) and exc.strerror:
        return str(exc.strerror)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def decode_frames(path: Path, count: int) -> Uint8Frames:
    """Decode ``path``'s whole video stream; return its first ``count`` frames as uint8 RGB.

    Every frame is decoded, not only those returned (which are ``(count, H, W, 3)``), so a
    file broken after them is noticed rather than trusted; only ``count`` frames are held
    in memory. The number decoded is compared with the number the container declares (its
    frame count, else its duration times its frame rate, as in :func:`probe_video`).

    Raises:
        IngestError: the file cannot be opened, has no video stream, fails to decode part
            way (``broken after frame 17 of 48: <decoder message>``), has a frame the
            decoder marks corrupt, decodes fewer frames than its container declares
            (``shorter than its container says: 30 of 48 frames``) or than ``count``, or
            changes its frame size within the first ``count`` frames.
    """
    if count <= 0:
        raise ValueError(f"count: expected an integer > 0, got {count!r}")
    _check_file(path)
    try:
        opened = av.open(str(path), mode="r")
    except _READ_ERRORS as exc:
        raise IngestError(path, f"not a readable video ({_reason(exc)})") from exc
    with opened as container:
        if not container.streams.video:
            raise IngestError(path, "holds no video stream; expected a video file")
        stream = container.streams.video[0]
        declared = _DeclaredLength.of(container, stream)
        kept: list[Uint8Frames] = []
        decoded = 0
        try:
            for frame in container.decode(stream):
                if frame.is_corrupt:
                    raise IngestError(
                        path,
                        f"broken at frame {decoded + 1}{declared.of_total}: the decoder "
                        "marks it corrupt",
                    )
                if len(kept) < count:
                    kept.append(_pixels(path, frame, kept))
                decoded += 1
        except IngestError:
            raise
        except _READ_ERRORS as exc:
            raise IngestError(
                path, f"broken after frame {decoded}{declared.of_total}: {_reason(exc)}"
            ) from exc
    if declared.is_short(decoded):
        raise IngestError(
            path, f"shorter than its container says: {decoded} of {declared.frames} frames"
        )
    if decoded < count:
        raise IngestError(path, f"too few frames: decoded {decoded}, expected at least {count}")
    return np.stack(kept)


@dataclass(frozen=True)
class _DeclaredLength:
    """How many frames a container declares: counted exactly, or from its duration."""

    frames: int
    exact: bool

    @classmethod
    def of(
        cls, container: av.container.InputContainer, stream: av.video.stream.VideoStream
    ) -> _DeclaredLength:
        if stream.frames:
            return cls(int(stream.frames), exact=True)
        rate = stream.average_rate or stream.guessed_rate
        frames = _declared_frames(container, stream, Fraction(rate)) if rate else 0
        return cls(frames, exact=False)

    @property
    def of_total(self) -> str:
        """`` of 48`` to follow a frame number, or nothing when no length is declared."""
        return f" of {self.frames}" if self.frames else ""

    def is_short(self, decoded: int) -> bool:
        """Whether ``decoded`` frames fall short of the declared length.

        A frame count must be met exactly; a duration is an estimate, held to
        :data:`TRUNCATION_THRESHOLD` as when probing.
        """
        if self.exact:
            return decoded < self.frames
        return bool(self.frames) and decoded < TRUNCATION_THRESHOLD * self.frames - 1


def _pixels(path: Path, frame: av.VideoFrame, kept: list[Uint8Frames]) -> Uint8Frames:
    """``frame`` as uint8 RGB, of the size of the frames ``kept`` before it."""
    # PyAV types every to_ndarray() format; rgb24 frames are 8-bit.
    pixels = cast(Uint8Frames, frame.to_ndarray(format="rgb24"))
    if kept and pixels.shape != kept[0].shape:
        raise IngestError(
            path,
            f"frame {len(kept)} is {pixels.shape[1]}x{pixels.shape[0]} but the first is "
            f"{kept[0].shape[1]}x{kept[0].shape[0]}; expected one size throughout",
        )
    return pixels


def fit_frames(frames: Uint8Frames, width: int, height: int) -> Uint8Frames:
    """Resize ``(T, H, W, 3)`` frames to cover ``width x height`` and crop the centre.

    The scale keeps the aspect ratio and is the smallest that fills the target, so only
    the overhanging sides are cut. Frames already of the target size are returned as is.
    """
    _, source_height, source_width, _ = frames.shape
    if (source_width, source_height) == (width, height):
        return frames
    scale = max(width / source_width, height / source_height)
    scaled_width = max(width, round(source_width * scale))
    scaled_height = max(height, round(source_height * scale))
    left = (scaled_width - width) // 2
    top = (scaled_height - height) // 2
    box = (left, top, left + width, top + height)
    fitted = [
        np.asarray(
            Image.fromarray(frame)
            .resize((scaled_width, scaled_height), Image.Resampling.BICUBIC)
            .crop(box)
        )
        for frame in frames
    ]
    return np.stack(fitted).astype(np.uint8, copy=False)


def choose_bucket(shape: Shaped, allowed: Iterable[Bucket]) -> Bucket | None:
    """The nearest allowed bucket (see :mod:`aiprod_trainer.data.buckets`) with at most
    ``shape.frames`` frames, since clips are trimmed, never padded; None if there is none.
    """
    fitting = [bucket for bucket in allowed if bucket.frames <= shape.frames]
    return nearest_bucket(shape, fitting) if fitting else None


@dataclass(frozen=True)
class ClipFilter:
    """Which probed clips to keep: durations in seconds, ``min_size`` the shorter side in px."""

    min_duration: float = 0.0
    max_duration: float | None = None
    min_size: int = 1

    def __post_init__(self) -> None:
        if self.min_duration < 0:
            raise ValueError(f"min_duration: expected a number >= 0, got {self.min_duration}")
        if self.max_duration is not None and self.max_duration < self.min_duration:
            raise ValueError(
                f"max_duration: expected a number >= min_duration ({self.min_duration}), "
                f"got {self.max_duration}"
            )
        if self.min_size < 1:
            raise ValueError(f"min_size: expected an integer >= 1, got {self.min_size}")

    def rejection(self, probe: VideoProbe) -> str | None:
        """Why ``probe`` is filtered out, or None to keep it."""
        duration = probe.duration_s
        if duration < self.min_duration:
            return f"too short: {duration:.2f} s, expected at least {self.min_duration:g} s"
        if self.max_duration is not None and duration > self.max_duration:
            return f"too long: {duration:.2f} s, expected at most {self.max_duration:g} s"
        shorter = min(probe.width, probe.height)
        if shorter < self.min_size:
            return (
                f"too small: {probe.width}x{probe.height}, expected the shorter side to be "
                f"at least {self.min_size} px"
            )
        return None
