"""Turn numpy arrays and torch tensors into the uint8 ``(T, H, W, C)`` frames writers use.

The canonical layout inside video IO is channels-last, ``(T, H, W, C)`` with ``C`` in
{1, 3, 4} (grey, RGB, RGBA), dtype uint8. Inputs may be:

* ``uint8`` arrays, used as they are;
* floating-point arrays whose values lie in ``value_range``; the default ``(-1.0, 1.0)`` is
  the pixel range the models produce, pass ``(0.0, 1.0)`` for the usual image range.
  Values outside the range are clipped; NaN or infinite values are rejected.

Torch tensors are accepted without importing torch: anything with a ``.detach()`` method
is detached, moved to the CPU and converted with ``.numpy()``.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from aiprod_pipelines.video_io.errors import VideoIOError

Layout = Literal["THWC", "TCHW", "CTHW"]

#: The models' pixel range; the default ``value_range`` for float input.
MODEL_VALUE_RANGE: tuple[float, float] = (-1.0, 1.0)

#: Axis order that turns each accepted layout into ``(T, H, W, C)``.
_TO_THWC: dict[str, tuple[int, int, int, int]] = {
    "THWC": (0, 1, 2, 3),
    "TCHW": (0, 2, 3, 1),
    "CTHW": (1, 2, 3, 0),
}
_CHANNELS = (1, 3, 4)

Uint8Frames = npt.NDArray[np.uint8]


def as_numpy(video: Any) -> np.ndarray:
    """Return ``video`` as a numpy array, detaching and copying torch tensors to the CPU.

    Tensors whose dtype numpy lacks (bfloat16) are converted to float32 first.
    """
    if hasattr(video, "detach"):
        tensor = video.detach()
        if hasattr(tensor, "cpu"):
            tensor = tensor.cpu()
        try:
            return np.asarray(tensor.numpy())
        except TypeError:
            return np.asarray(tensor.float().numpy())
    return np.asarray(video)


def _describe(target: str | os.PathLike[str] | None) -> str:
    return f"cannot write {target}" if target is not None else "invalid video"


def to_uint8_frames(
    video: Any,
    *,
    value_range: tuple[float, float] = MODEL_VALUE_RANGE,
    layout: Layout = "THWC",
    target: str | os.PathLike[str] | None = None,
) -> Uint8Frames:
    """Validate ``video`` and return it as C-contiguous uint8 frames ``(T, H, W, C)``.

    Args:
        video: a 4-D numpy array or torch tensor in ``layout``.
        value_range: the ``(low, high)`` pixel range of float input; ignored for uint8.
        layout: axis order of ``video``: ``"THWC"`` (default), ``"TCHW"`` or ``"CTHW"``.
        target: the file being written, named in error messages.

    Raises:
        VideoIOError: wrong number of dimensions, channel count, dtype or value range;
            no frames; NaN or infinite values.
    """
    what = _describe(target)
    if layout not in _TO_THWC:
        raise VideoIOError(
            f"{what}: unknown layout {layout!r}; expected one of {', '.join(_TO_THWC)}"
        )
    array = as_numpy(video)
    if array.ndim != 4:
        raise VideoIOError(
            f"{what}: expected a 4-D video in layout {layout}, got shape {tuple(array.shape)}"
        )
    frames = array.transpose(_TO_THWC[layout])
    count, height, width, channels = frames.shape
    if channels not in _CHANNELS:
        hint = "" if layout != "THWC" else "; for channels-first input pass layout='TCHW'"
        raise VideoIOError(
            f"{what}: expected 1, 3 or 4 channels in layout {layout}, got shape "
            f"{tuple(array.shape)}{hint}"
        )
    if count == 0 or height == 0 or width == 0:
        raise VideoIOError(
            f"{what}: the video is empty (shape {tuple(array.shape)}); expected at least "
            "one frame of at least 1x1 pixels"
        )
    if frames.dtype == np.uint8:
        return np.ascontiguousarray(frames)
    if not np.issubdtype(frames.dtype, np.floating):
        raise VideoIOError(
            f"{what}: unsupported dtype {frames.dtype}; expected uint8 or a float dtype "
            f"with values in value_range={value_range}"
        )
    return _float_to_uint8(frames, value_range, what)


def _float_to_uint8(frames: np.ndarray, value_range: tuple[float, float], what: str) -> Uint8Frames:
    low, high = (float(bound) for bound in value_range)
    if not (np.isfinite(low) and np.isfinite(high) and high > low):
        raise VideoIOError(
            f"{what}: value_range must be two finite numbers (low, high) with low < high, "
            f"got {value_range}"
        )
    if np.isnan(frames).any():
        raise VideoIOError(f"{what}: the video contains NaN values; expected finite pixels")
    if not np.isfinite(frames).all():
        raise VideoIOError(f"{what}: the video contains infinite values; expected finite pixels")
    scaled = (frames.astype(np.float32) - np.float32(low)) * np.float32(255.0 / (high - low))
    return np.ascontiguousarray(np.rint(np.clip(scaled, 0.0, 255.0)).astype(np.uint8))


def to_rgb(frames: Uint8Frames) -> Uint8Frames:
    """Return uint8 ``(T, H, W, 3)`` frames: grey is repeated, the alpha channel dropped."""
    channels = frames.shape[-1]
    if channels == 3:
        return frames
    if channels == 1:
        return np.ascontiguousarray(np.repeat(frames, 3, axis=-1))
    return np.ascontiguousarray(frames[..., :3])


def pad_to_even(frames: Uint8Frames) -> Uint8Frames:
    """Pad odd heights/widths by repeating the last row/column (H.264 yuv420p needs even)."""
    _, height, width, _ = frames.shape
    if height % 2 == 0 and width % 2 == 0:
        return frames
    return np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
