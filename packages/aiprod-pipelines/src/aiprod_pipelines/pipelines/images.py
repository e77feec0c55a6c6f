"""The conditioning image of image-to-video: read, checked, resized and cropped to the video.

Accepted images:

- a path to a PNG or JPEG (read with :func:`aiprod_pipelines.video_io.read_image`);
- uint8 ``[H, W, 3]`` pixels (numpy array or torch tensor), 0..255;
- float ``[3, H, W]`` pixels (numpy array or torch tensor) in the models' range [-1, 1].

The image is scaled (bilinear, antialiased) so it covers ``width x height`` and then
center-cropped to it, keeping its aspect ratio.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TypeAlias

import numpy as np
import torch
import torch.nn.functional as F

from aiprod_pipelines.pipelines.request import InvalidRequestError
from aiprod_pipelines.video_io import VideoIOError, read_image

ImageInput: TypeAlias = str | Path | np.ndarray | torch.Tensor
"""What ``ImageToVideoPipeline`` takes as its first frame."""

RANGE_TOLERANCE = 1e-3
"""How far float pixels may stray outside [-1, 1] (rounding) before they are refused."""


def _invalid(message: str) -> InvalidRequestError:
    return InvalidRequestError("image", message)


def image_to_tensor(image: ImageInput) -> torch.Tensor:
    """``image`` as float32 ``[3, H, W]`` in [-1, 1] on the CPU (see the module docs)."""
    if isinstance(image, str | Path):
        try:
            image = read_image(image)
        except VideoIOError as exc:
            raise _invalid(str(exc)) from exc
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.array(image))  # a copy: the caller's array may be read-only
    if not isinstance(image, torch.Tensor):
        raise _invalid(
            f"image of type {type(image).__name__} is not supported: pass a PNG/JPEG path, "
            "uint8 [H, W, 3] pixels or float [3, H, W] pixels in [-1, 1]"
        )
    image = image.detach().cpu()
    if image.dtype == torch.uint8:
        if image.ndim != 3 or image.shape[2] != 3:
            raise _invalid(
                f"uint8 image of shape {tuple(image.shape)} is not supported: expected "
                "[height, width, 3] RGB pixels"
            )
        return image.permute(2, 0, 1).float() / 127.5 - 1.0
    if image.is_floating_point():
        if image.ndim != 3 or image.shape[0] != 3:
            raise _invalid(
                f"float image of shape {tuple(image.shape)} is not supported: expected "
                "[3, height, width] RGB pixels in [-1, 1]"
            )
        image = image.float()
        low, high = float(image.min()), float(image.max())
        if not (math.isfinite(low) and math.isfinite(high)) or (
            low < -1.0 - RANGE_TOLERANCE or high > 1.0 + RANGE_TOLERANCE
        ):
            raise _invalid(
                f"float image values span [{low:.3g}, {high:.3g}]: expected pixels in [-1, 1] "
                "(or pass uint8 [H, W, 3] pixels)"
            )
        return image.clamp(-1.0, 1.0)
    raise _invalid(
        f"image of dtype {image.dtype} is not supported: expected uint8 [H, W, 3] or float "
        "[3, H, W] pixels"
    )


def resize_and_crop(image: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """``[3, H, W]`` scaled to cover ``width x height``, then center-cropped to exactly it."""
    _, source_height, source_width = image.shape
    if min(source_height, source_width) < 1:
        raise _invalid(f"image of shape {tuple(image.shape)} has no pixels")
    scale = max(width / source_width, height / source_height)
    scaled_height = max(height, round(source_height * scale))
    scaled_width = max(width, round(source_width * scale))
    if (scaled_height, scaled_width) != (source_height, source_width):
        image = F.interpolate(
            image[None],
            size=(scaled_height, scaled_width),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )[0]
    top = (scaled_height - height) // 2
    left = (scaled_width - width) // 2
    return image[:, top : top + height, left : left + width]


def prepare_image(image: ImageInput, width: int, height: int) -> torch.Tensor:
    """``image`` as a one-frame video ``[1, 3, 1, height, width]`` float32 in [-1, 1] (CPU)."""
    pixels = resize_and_crop(image_to_tensor(image), width, height)
    return pixels.clamp(-1.0, 1.0)[None, :, None]
