"""MP4 (H.264, yuv420p) written with PyAV and read back, also by a separate ffmpeg binary.

H.264 with 4:2:0 chroma is lossy: on the smooth synthetic clip at the default crf=18 the
mean absolute error per channel value is about 2 (of 255); tests allow MAX_MEAN_ABS_ERROR.
"""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from aiprod_pipelines.video_io import read_video, to_uint8_frames, write_mp4, write_video

pytestmark = pytest.mark.integration

#: Largest mean absolute difference (0..255 scale) accepted after an H.264 round trip.
MAX_MEAN_ABS_ERROR = 3.0


def mean_abs_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual.astype(np.int16) - expected.astype(np.int16)).mean())


def test_mp4_round_trip_keeps_count_size_fps_and_pixels(
    tmp_path: Path, smooth_clip: np.ndarray
) -> None:
    path = write_video(tmp_path / "clip.mp4", smooth_clip, fps=24)
    assert path == tmp_path / "clip.mp4"
    frames, fps, meta = read_video(path)
    assert frames.shape == (12, 48, 64, 3)
    assert frames.dtype == np.uint8
    assert fps == 24.0
    assert meta.fps == Fraction(24)
    assert meta.frame_count == 12
    assert (meta.width, meta.height) == (64, 48)
    assert meta.codec == "h264"
    assert meta.format == "mp4"
    assert meta.duration_s == pytest.approx(0.5, abs=1e-3)
    assert mean_abs_error(frames, to_uint8_frames(smooth_clip)) < MAX_MEAN_ABS_ERROR


def test_mp4_keeps_ntsc_frame_rate_exactly(tmp_path: Path, smooth_clip: np.ndarray) -> None:
    path = write_mp4(tmp_path / "ntsc.mp4", smooth_clip[:5], fps=Fraction(30000, 1001))
    _, fps, meta = read_video(path)
    assert meta.fps == Fraction(30000, 1001)
    assert fps == pytest.approx(29.97002997)


def test_lower_crf_is_closer_to_the_source(tmp_path: Path, smooth_clip: np.ndarray) -> None:
    source = to_uint8_frames(smooth_clip)
    errors = []
    for crf in (0, 35):
        frames, _, _ = read_video(
            write_mp4(tmp_path / f"crf{crf}.mp4", smooth_clip, fps=24, crf=crf)
        )
        errors.append(mean_abs_error(frames, source))
    assert errors[0] < errors[1]


def test_odd_size_is_padded_with_the_last_row_and_column(
    tmp_path: Path, smooth_clip: np.ndarray
) -> None:
    odd = smooth_clip[:4, :47, :63]
    frames, _, meta = read_video(write_mp4(tmp_path / "odd.mp4", odd, fps=24))
    assert (meta.width, meta.height) == (64, 48)
    assert mean_abs_error(frames[:, :47, :63], to_uint8_frames(odd)) < MAX_MEAN_ABS_ERROR
    assert mean_abs_error(frames[:, 47, :], frames[:, 46, :]) < MAX_MEAN_ABS_ERROR
    assert mean_abs_error(frames[:, :, 63], frames[:, :, 62]) < MAX_MEAN_ABS_ERROR


def test_grey_and_rgba_input_become_rgb(tmp_path: Path) -> None:
    grey = np.full((3, 16, 16, 1), 200, dtype=np.uint8)
    frames, _, _ = read_video(write_mp4(tmp_path / "grey.mp4", grey, fps=8))
    assert frames.shape == (3, 16, 16, 3)
    assert np.abs(frames.astype(int) - 200).max() <= 3
    rgba = np.zeros((3, 16, 16, 4), dtype=np.uint8)
    rgba[..., 0] = 250
    rgba[..., 3] = 0
    frames, _, _ = read_video(write_mp4(tmp_path / "rgba.mp4", rgba, fps=8))
    assert np.abs(frames[..., 0].astype(int) - 250).max() <= 4
    assert frames[..., 1:].max() <= 4


def test_float_zero_one_range(tmp_path: Path) -> None:
    clip = np.full((2, 16, 16, 3), 0.5, dtype=np.float32)
    frames, _, _ = read_video(write_mp4(tmp_path / "half.mp4", clip, fps=8, value_range=(0.0, 1.0)))
    assert np.abs(frames.astype(int) - 128).max() <= 2


def test_torch_tensor_in_model_layout(tmp_path: Path, smooth_clip: np.ndarray) -> None:
    torch = pytest.importorskip("torch")
    tensor = torch.from_numpy(smooth_clip).permute(3, 0, 1, 2).requires_grad_(True)
    frames, _, _ = read_video(write_video(tmp_path / "t.mp4", tensor, fps=12, layout="CTHW"))
    assert frames.shape == (12, 48, 64, 3)
    assert mean_abs_error(frames, to_uint8_frames(smooth_clip)) < MAX_MEAN_ABS_ERROR


def test_mp4_is_readable_by_a_separate_ffmpeg(tmp_path: Path, smooth_clip: np.ndarray) -> None:
    imageio_ffmpeg = pytest.importorskip(
        "imageio_ffmpeg", reason="imageio-ffmpeg (test-only) provides an independent ffmpeg"
    )
    path = write_video(tmp_path / "clip.mp4", smooth_clip, fps=24)
    count, seconds = imageio_ffmpeg.count_frames_and_secs(str(path))
    assert count == 12
    assert seconds == pytest.approx(0.5, abs=0.02)

    decoded_bytes = subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            *("-v", "error", "-i", str(path)),
            *("-f", "rawvideo", "-pix_fmt", "rgb24", "-"),
        ],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    decoded = np.frombuffer(decoded_bytes, dtype=np.uint8).reshape(-1, 48, 64, 3)
    assert decoded.shape[0] == 12
    assert mean_abs_error(decoded, to_uint8_frames(smooth_clip)) < MAX_MEAN_ABS_ERROR


def test_same_frames_give_identical_bytes_even_with_decodes_in_between(
    tmp_path: Path, smooth_clip: np.ndarray
) -> None:
    # Decoding between encodes used to change what PyAV's implicit rgb24 -> yuv420p
    # conversion produced, so a seeded dataset written twice in one process differed.
    frames = to_uint8_frames(smooth_clip)
    written = []
    for attempt in range(8):
        for deterministic in (True, False):
            path = write_mp4(
                tmp_path / f"{attempt}-{deterministic}.mp4",
                frames,
                fps=8,
                deterministic=deterministic,
            )
            read_video(path)
            written.append((deterministic, path.read_bytes()))
    assert len({data for flag, data in written if flag}) == 1
    assert len({data for flag, data in written if not flag}) == 1
