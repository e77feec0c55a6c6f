"""GIF written with Pillow and read back with PyAV (a different library) and Pillow."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageSequence

from aiprod_pipelines.video_io import read_video, write_gif, write_video

pytestmark = pytest.mark.integration


def test_palette_clip_round_trips_exactly(tmp_path: Path, palette_clip: np.ndarray) -> None:
    path = write_video(tmp_path / "anim.gif", palette_clip, fps=10)
    frames, fps, meta = read_video(path)
    np.testing.assert_array_equal(frames, palette_clip)
    assert fps == 10.0
    assert meta.format == "gif"
    assert meta.frame_count == 6
    assert (meta.width, meta.height) == (24, 20)
    assert meta.duration_s == pytest.approx(0.6)


def test_frame_duration_and_loop_are_stored(tmp_path: Path, palette_clip: np.ndarray) -> None:
    forever = write_gif(tmp_path / "forever.gif", palette_clip, fps=25)
    three = write_gif(tmp_path / "three.gif", palette_clip, fps=25, loop=3)
    with Image.open(forever) as image:
        durations = [frame.info["duration"] for frame in ImageSequence.Iterator(image)]
        assert image.info["loop"] == 0
        assert image.n_frames == 6
    assert durations == [40] * 6
    with Image.open(three) as image:
        assert image.info["loop"] == 3


def test_fps_gif_cannot_store_is_rounded_to_centiseconds(
    tmp_path: Path, palette_clip: np.ndarray
) -> None:
    _, fps, meta = read_video(write_gif(tmp_path / "film.gif", palette_clip, fps=24))
    assert meta.fps == Fraction(25)
    assert fps == 25.0


def test_float_input_and_grey_frames(tmp_path: Path) -> None:
    ramp = np.linspace(-1.0, 1.0, 4, dtype=np.float32)
    clip = np.broadcast_to(ramp[:, None, None, None], (4, 6, 8, 1))
    frames, _, _ = read_video(write_gif(tmp_path / "grey.gif", clip, fps=10))
    assert frames.shape == (4, 6, 8, 3)
    assert frames[:, 0, 0, 0].tolist() == [0, 85, 170, 255]
    assert (frames == frames[:, :1, :1, :1]).all()


def test_identical_consecutive_frames_are_merged_keeping_play_time(
    tmp_path: Path, palette_clip: np.ndarray
) -> None:
    held = np.stack([palette_clip[0]] * 3 + [palette_clip[1]])
    frames, _, meta = read_video(write_gif(tmp_path / "held.gif", held, fps=10))
    assert meta.frame_count == 2
    np.testing.assert_array_equal(frames, palette_clip[:2])
    assert meta.duration_s == pytest.approx(0.4)
