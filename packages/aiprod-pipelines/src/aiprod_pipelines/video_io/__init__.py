"""Video IO: write generated frames to MP4 / GIF / PNG frames and read videos back.

Writing takes uint8 or float frames, numpy arrays or torch tensors, channels-last
``(T, H, W, C)`` by default; float pixels are in the models' range ``(-1, 1)`` unless
``value_range`` says otherwise. Reading returns uint8 RGB numpy arrays. Every problem a
caller can cause raises :class:`VideoIOError` naming the file, and writes are atomic.

    from aiprod_pipelines.video_io import read_video, write_video

    write_video("out/clip.mp4", frames, fps=24)  # frames: (T, H, W, 3), floats in [-1, 1]
    pixels, fps, meta = read_video("out/clip.mp4")
"""

from __future__ import annotations

from aiprod_pipelines.video_io.errors import VideoIOError
from aiprod_pipelines.video_io.formats import READ_DEMUXERS, WRITE_FORMATS
from aiprod_pipelines.video_io.frames import MODEL_VALUE_RANGE, Layout, to_uint8_frames
from aiprod_pipelines.video_io.readers import (
    VideoMetadata,
    read_image,
    read_png_frames,
    read_video,
)
from aiprod_pipelines.video_io.writers import (
    write_gif,
    write_mp4,
    write_png_frames,
    write_video,
)

__all__ = [
    "MODEL_VALUE_RANGE",
    "READ_DEMUXERS",
    "WRITE_FORMATS",
    "Layout",
    "VideoIOError",
    "VideoMetadata",
    "read_image",
    "read_png_frames",
    "read_video",
    "to_uint8_frames",
    "write_gif",
    "write_mp4",
    "write_png_frames",
    "write_video",
]
