"""Pixel clips of a dataset manifest, shaped for the VAE: float [3, F, H, W] in [-1, 1].

Each record says the shape its clip must have (``width``, ``height``, ``frames``). A clip
is decoded with :func:`aiprod_pipelines.video_io.read_video` (or ``read_image`` for a
still image), its first ``frames`` frames are kept, and each frame is scaled (bilinear,
antialiased) to the smallest size that covers ``width x height`` while keeping its aspect
ratio, then center-cropped to exactly that size. Prepared datasets already have the
record's shape, which makes this an identity apart from the conversion to floats.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from aiprod_core.errors import AiprodError
from aiprod_pipelines.video_io import VideoIOError, read_image, read_video
from aiprod_trainer.data.manifest import Manifest, ManifestRecord, load_manifest

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class ClipError(AiprodError, ValueError):
    """A clip cannot be read, or has fewer frames than its record asks for; names the file."""


def load_clip(path: Path, record: ManifestRecord) -> torch.Tensor:
    """The media at ``path`` as float [3, frames, height, width] in [-1, 1] per ``record``."""
    try:
        if path.suffix.lower() in IMAGE_SUFFIXES:
            pixels = read_image(path)[None]
        else:
            pixels, _, _ = read_video(path)
    except VideoIOError as exc:
        raise ClipError(str(exc)) from None
    if pixels.shape[0] < record.frames:
        raise ClipError(
            f"{path}: has {pixels.shape[0]} frames; its manifest record expects at least "
            f"{record.frames}"
        )
    return frames_to_clip(pixels[: record.frames], record.width, record.height)


def frames_to_clip(pixels: np.ndarray, width: int, height: int) -> torch.Tensor:
    """uint8 (T, H0, W0, 3) -> float [3, T, height, width] in [-1, 1]: cover-resize, center crop."""
    video = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float()
    source_height, source_width = video.shape[-2:]
    if (source_height, source_width) != (height, width):
        scale = max(width / source_width, height / source_height)
        size = (
            max(height, math.ceil(source_height * scale - 1e-6)),
            max(width, math.ceil(source_width * scale - 1e-6)),
        )
        if size != (source_height, source_width):
            video = F.interpolate(
                video, size=size, mode="bilinear", align_corners=False, antialias=True
            )
        top = (video.shape[-2] - height) // 2
        left = (video.shape[-1] - width) // 2
        video = video[..., top : top + height, left : left + width]
    video = (video / 127.5 - 1.0).clamp(-1.0, 1.0)
    return video.permute(1, 0, 2, 3).contiguous()


class ClipDataset(Dataset[torch.Tensor]):
    """Torch Dataset of a manifest's clips as float [3, F, H, W] in [-1, 1] (for VAE training).

    ``manifest`` is a path (loaded with media checks) or a loaded :class:`Manifest`. A
    clip that cannot be read raises :class:`ClipError` naming its file.

    With ``keep_in_memory`` each clip is decoded once and then served from memory (a
    32x32, 9-frame clip takes 110 KiB; decoding it costs about 3 ms, a fifth of a tiny
    VAE step). Items are returned as copies, so a caller cannot change what is kept.
    Each DataLoader worker process keeps its own copy.
    """

    def __init__(
        self, manifest: Manifest | str | os.PathLike[str], *, keep_in_memory: bool = False
    ) -> None:
        self.manifest = (
            manifest
            if isinstance(manifest, Manifest)
            else load_manifest(manifest, check_media=True)
        )
        self.records = self.manifest.records
        self.keep_in_memory = keep_in_memory
        self._kept: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> torch.Tensor:
        kept = self._kept.get(index)
        if kept is not None:
            return kept.clone()
        record = self.records[index]
        clip = load_clip(self.manifest.media_path(record), record)
        if self.keep_in_memory:
            self._kept[index] = clip.clone()
        return clip
