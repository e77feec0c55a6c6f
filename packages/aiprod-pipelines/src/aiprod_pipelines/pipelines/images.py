"""The conditioning images of image-to-video: read, checked, resized and cropped to the video.

An :class:`ImageCondition` pins an image to one frame of the generated video: frame 0 is
image-to-video, the first and the last frame make keyframe interpolation, and several
leading frames continue a video. ``"cat.png@16"`` on the command line is
``ImageCondition("cat.png", frame=16)`` (see :func:`parse_image_argument`).

Accepted images:

- a path to a PNG or JPEG (read with :func:`aiprod_pipelines.video_io.read_image`);
- uint8 ``[H, W, 3]`` pixels (numpy array or torch tensor), 0..255;
- float ``[3, H, W]`` pixels (numpy array or torch tensor) in the models' range [-1, 1].

The image is scaled (bilinear, antialiased) so it covers ``width x height`` and then
center-cropped to it, keeping its aspect ratio.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import numpy as np
import torch
import torch.nn.functional as F

from aiprod_pipelines.pipelines.request import InvalidRequestError
from aiprod_pipelines.video_io import VideoIOError, read_image

ImageInput: TypeAlias = str | Path | np.ndarray | torch.Tensor
"""One image, in any of the forms listed in the module docs."""


@dataclass(frozen=True)
class ImageCondition:
    """``image`` shown at pixel frame ``frame`` (0-based) of the generated video."""

    image: ImageInput
    frame: int = 0


def latent_frame_of(frame: int, temporal: int) -> int:
    """The latent frame that holds pixel frame ``frame`` for a causal VAE of ``temporal``
    compression: frame 0 alone is latent frame 0, then frames ``1 + (j - 1) * temporal ..
    j * temporal`` make latent frame ``j``."""
    return 0 if frame == 0 else 1 + (frame - 1) // temporal


@dataclass(frozen=True)
class ImageFrameProblem:
    """The image at position ``index`` cannot take its frame; ``message`` says why."""

    index: int
    message: str


def image_frame_problem(
    frames: Sequence[int], video_frames: int, temporal: int
) -> ImageFrameProblem | None:
    """The first image whose frame (``frames[i]``) a ``video_frames``-frame video of a VAE
    with ``temporal`` compression cannot take; None when every frame fits.

    Each frame must lie in the video (0 .. video_frames - 1), and no two may fall in the
    same latent frame. ``aiprod-generate`` names the ``--image`` value at fault and the
    server the ``images.N.frame`` field, both before the model runs.
    """
    seen: dict[int, int] = {}
    for index, frame in enumerate(frames):
        if not 0 <= frame < video_frames:
            return ImageFrameProblem(
                index,
                f"image frame {frame} is outside the video: use a frame from 0 to "
                f"{video_frames - 1} (frames={video_frames})",
            )
        latent = latent_frame_of(frame, temporal)
        if latent in seen:
            if latent == 0:
                return ImageFrameProblem(
                    index, "two images are pinned to frame 0: use one image per frame"
                )
            first = 1 + (latent - 1) * temporal
            return ImageFrameProblem(
                index,
                f"image frames {seen[latent]} and {frame} fall in the same latent frame "
                f"(frames {first}..{latent * temporal} are encoded together): use one image "
                "per group of frames",
            )
        seen[latent] = frame
    return None


def check_image_frames(images: Sequence[ImageCondition], frames: int, temporal: int) -> None:
    """Raise InvalidRequestError (field ``image``) unless every image's frame lies in a
    ``frames``-frame video and no two images fall in the same latent frame."""
    problem = image_frame_problem([condition.frame for condition in images], frames, temporal)
    if problem is not None:
        raise _invalid(problem.message)


def parse_image_argument(text: str) -> ImageCondition:
    """``"PATH"`` or ``"PATH@FRAME"`` as an :class:`ImageCondition` (the image is not read).

    Raises InvalidRequestError (field ``image``) when ``FRAME`` is not an integer >= 0 or
    the path is empty.
    """
    path, separator, frame = text.rpartition("@")
    if not separator or not frame.strip().lstrip("-").isdigit():
        path, frame = text, "0"
    if not path.strip():
        raise _invalid(f"image {text!r} names no file: use PATH or PATH@FRAME")
    index = int(frame)
    if index < 0:
        raise _invalid(f"image {text!r}: frame {index} is negative; use PATH@FRAME with FRAME >= 0")
    return ImageCondition(Path(path), index)


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
