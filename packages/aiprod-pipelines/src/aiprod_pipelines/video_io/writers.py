"""Write frames to MP4 (H.264, PyAV), GIF (Pillow) or a folder of PNG frames (Pillow).

Every writer takes the same input (see :mod:`aiprod_pipelines.video_io.frames`), writes
atomically (through :mod:`aiprod_core.atomic`: a temp file or folder beside the target,
fsync, rename) and returns the path written. A failed or interrupted write leaves what was
at the target before.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any, Final, Literal

import av
import av.error
import numpy as np
from PIL import Image

from aiprod_core.atomic import atomic_folder, atomic_path
from aiprod_pipelines.video_io.errors import VideoIOError
from aiprod_pipelines.video_io.formats import (
    FRAME_NAME,
    FRAME_NAME_PATTERN,
    resolve_write_format,
)
from aiprod_pipelines.video_io.frames import (
    MODEL_VALUE_RANGE,
    Layout,
    Uint8Frames,
    pad_to_even,
    to_rgb,
    to_uint8_frames,
)

PathLike = str | os.PathLike[str]
OddSize = Literal["pad", "error"]

#: H.264 encoder used for MP4; PyAV's binary wheels include it.
H264_ENCODER: Final = "libx264"
#: x264's macroblock-tree rate control gave different bytes for the same frames from one
#: encode to the next in one process (its assembly reads memory that earlier work left
#: behind); without it the output depends only on the frames. On clips this short it
#: changes file size and quality by little.
X264_PARAMS = "mbtree=0"
#: Default x264 constant rate factor: 0 is lossless, 18 is visually lossless, 51 worst.
DEFAULT_CRF = 18
#: GIF frame delays are whole centiseconds in 16 bits; viewers slow down delays under 2 cs.
GIF_MIN_DELAY_CS = 2
GIF_MAX_DELAY_CS = 65535


def frame_rate(fps: float | Fraction, target: Path) -> Fraction:
    """Validate ``fps`` and return it as an exact fraction (29.97 -> 2997/100)."""
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real):
        raise VideoIOError(f"cannot write {target}: fps must be a number, got {fps!r}")
    if not (math.isfinite(fps) and fps > 0):
        raise VideoIOError(f"cannot write {target}: fps must be positive and finite, got {fps}")
    if isinstance(fps, numbers.Rational):
        return Fraction(int(fps.numerator), int(fps.denominator))
    return Fraction(float(fps)).limit_denominator(1001)


@contextlib.contextmanager
def _atomic_file(target: Path) -> Iterator[Path]:
    """Yield an empty temp file beside ``target``; on success it replaces ``target``.

    The atomic-write machinery's errors (a folder at ``target``, an unwritable folder, a
    failed rename) become :class:`VideoIOError`; their messages name the file.
    """
    try:
        with atomic_path(target, create=True) as temp:
            yield temp
    except OSError as exc:
        raise VideoIOError(str(exc)) from exc


@contextlib.contextmanager
def _atomic_frames_folder(target: Path) -> Iterator[Path]:
    """Yield an empty temp folder beside ``target``; on success it takes ``target``'s place.

    An existing folder is replaced only if it holds nothing but frame files; the
    machinery's errors become :class:`VideoIOError` naming the folder.
    """
    try:
        with atomic_folder(target, _is_frame_file, replaceable_name="frames") as temp:
            yield temp
    except OSError as exc:
        raise VideoIOError(str(exc)) from exc


def write_video(
    path: PathLike,
    video: Any,
    *,
    fps: float | Fraction,
    format: str | None = None,
    value_range: tuple[float, float] = MODEL_VALUE_RANGE,
    layout: Layout = "THWC",
) -> Path:
    """Write ``video`` to ``path`` as MP4, GIF or PNG frames, chosen by suffix or ``format``.

    ``.mp4`` -> :func:`write_mp4`, ``.gif`` -> :func:`write_gif`, a path without a suffix
    (or ``format="png"``) -> :func:`write_png_frames` (which ignores ``fps``).

    Args:
        path: the file (or, for PNG frames, folder) to write.
        video: uint8 or float frames, numpy array or torch tensor, in ``layout``.
        fps: frames per second.
        format: ``"mp4"``, ``"gif"`` or ``"png"``; overrides the suffix.
        value_range: pixel range of float input, ``(-1, 1)`` by default.
        layout: ``"THWC"`` (default), ``"TCHW"`` or ``"CTHW"``.

    Returns:
        The path written.
    """
    target = Path(path)
    chosen = resolve_write_format(target, format)
    if chosen == "mp4":
        return write_mp4(target, video, fps=fps, value_range=value_range, layout=layout)
    if chosen == "gif":
        return write_gif(target, video, fps=fps, value_range=value_range, layout=layout)
    frame_rate(fps, target)  # PNG frames store no rate, but a bad fps is still a caller bug
    return write_png_frames(target, video, value_range=value_range, layout=layout)


def write_mp4(
    path: PathLike,
    video: Any,
    *,
    fps: float | Fraction,
    value_range: tuple[float, float] = MODEL_VALUE_RANGE,
    layout: Layout = "THWC",
    crf: int = DEFAULT_CRF,
    odd_size: OddSize = "pad",
    deterministic: bool = False,
) -> Path:
    """Write an H.264 / yuv420p MP4 with PyAV.

    The same frames always give the same bytes on one machine (see :data:`X264_PARAMS`).
    ``deterministic=True`` also encodes on one thread, so the bytes do not depend on the
    number of CPU cores; use it for datasets that must be reproducible from a seed.

    yuv420p needs an even width and height. With ``odd_size="pad"`` (default) an odd
    dimension is padded by one row/column repeating the last one, so a 33x17 clip is
    stored as 34x18; with ``odd_size="error"`` it raises instead. Grey frames are stored
    as RGB, an alpha channel is dropped. H.264 is lossy unless ``crf=0``.
    """
    target = Path(path)
    rate = frame_rate(fps, target)
    if isinstance(crf, bool) or not (isinstance(crf, int) and 0 <= crf <= 51):
        raise VideoIOError(f"cannot write {target}: crf must be an integer 0..51, got {crf!r}")
    if odd_size not in ("pad", "error"):
        raise VideoIOError(
            f"cannot write {target}: odd_size must be 'pad' or 'error', got {odd_size!r}"
        )
    frames = to_rgb(to_uint8_frames(video, value_range=value_range, layout=layout, target=target))
    _, height, width, _ = frames.shape
    if odd_size == "error" and (height % 2 or width % 2):
        raise VideoIOError(
            f"cannot write {target}: H.264 yuv420p needs an even width and height, got "
            f"{width}x{height}; crop the frames or pass odd_size='pad'"
        )
    frames = pad_to_even(frames)
    if H264_ENCODER not in av.codecs_available:
        raise VideoIOError(
            f"cannot write {target}: this PyAV build has no {H264_ENCODER} encoder; "
            "install a PyAV wheel from PyPI"
        )
    with _atomic_file(target) as temp:
        try:
            _encode_h264(temp, frames, rate, crf, threads=1 if deterministic else 0)
        except (av.error.FFmpegError, OSError) as exc:
            raise VideoIOError(f"cannot write {target}: H.264 encoding failed ({exc})") from exc
    return target


def _encode_h264(
    path: Path, frames: Uint8Frames, rate: Fraction, crf: int, threads: int = 0
) -> None:
    _, height, width, _ = frames.shape
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream(H264_ENCODER, rate=rate)
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "threads": str(threads), "x264-params": X264_PARAMS}
        for index, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            frame.time_base = 1 / rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def gif_delay_ms(fps: Fraction, target: Path) -> int:
    """Frame delay for a GIF at ``fps``, rounded to the format's 10 ms resolution."""
    slowest = Fraction(100, GIF_MAX_DELAY_CS)
    fastest = Fraction(100, GIF_MIN_DELAY_CS)
    if not slowest <= fps <= fastest:
        raise VideoIOError(
            f"cannot write {target}: a GIF stores each frame's delay as {GIF_MIN_DELAY_CS}.."
            f"{GIF_MAX_DELAY_CS} hundredths of a second (viewers slow down shorter ones), so "
            f"fps must be between {float(slowest):.4f} and {float(fastest):g}, got {float(fps):g}"
        )
    return 10 * round(100 / fps)


def write_gif(
    path: PathLike,
    video: Any,
    *,
    fps: float | Fraction,
    value_range: tuple[float, float] = MODEL_VALUE_RANGE,
    layout: Layout = "THWC",
    loop: int = 0,
) -> Path:
    """Write an animated GIF with Pillow; ``loop=0`` repeats forever.

    GIF delays are whole centiseconds, so the frame time is ``round(100 / fps)`` cs: fps
    values that divide 100 (10, 20, 25, 50) are exact, 24 fps is stored as 25 fps.
    Each frame gets its own palette of at most 256 colours (exact for frames with no more
    colours than that). Pillow merges consecutive identical frames into one frame that
    lasts as long as all of them, so playback time is kept but the frame count drops.
    Grey frames are stored as RGB, an alpha channel is dropped.
    """
    target = Path(path)
    delay = gif_delay_ms(frame_rate(fps, target), target)
    if isinstance(loop, bool) or not (isinstance(loop, int) and 0 <= loop <= 65535):
        raise VideoIOError(
            f"cannot write {target}: loop must be an integer 0..65535 (0 = forever), got {loop!r}"
        )
    frames = to_rgb(to_uint8_frames(video, value_range=value_range, layout=layout, target=target))
    images = [Image.fromarray(pixels) for pixels in frames]
    with _atomic_file(target) as temp:
        try:
            images[0].save(
                temp,
                format="GIF",
                save_all=True,
                append_images=images[1:],
                duration=delay,
                loop=loop,
            )
        except OSError as exc:
            raise VideoIOError(f"cannot write {target}: GIF encoding failed ({exc})") from exc
    return target


def _is_frame_file(entry: Path) -> bool:
    return entry.is_file() and FRAME_NAME_PATTERN.fullmatch(entry.name) is not None


def write_png_frames(
    folder: PathLike,
    video: Any,
    *,
    value_range: tuple[float, float] = MODEL_VALUE_RANGE,
    layout: Layout = "THWC",
) -> Path:
    """Write one lossless PNG per frame, ``frame_00000.png``, ``frame_00001.png``, ...

    Grey frames are written as greyscale PNGs and RGBA frames keep their alpha. The
    folder is written next to ``folder`` and renamed into place; an existing folder is
    replaced only if it holds nothing but frame files.
    """
    target = Path(folder)
    frames = to_uint8_frames(video, value_range=value_range, layout=layout, target=target)
    if frames.shape[-1] == 1:
        frames = frames[..., 0]
    with _atomic_frames_folder(target) as temp:
        for index, pixels in enumerate(frames):
            frame_path = temp / FRAME_NAME.format(index=index)
            try:
                Image.fromarray(np.ascontiguousarray(pixels)).save(frame_path, format="PNG")
            except OSError as exc:
                raise VideoIOError(f"cannot write {target}: {frame_path.name}: {exc}") from exc
    return target
