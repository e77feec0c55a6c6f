"""Writer argument checks that fail before anything touches the file system."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from aiprod_pipelines.video_io import VideoIOError, write_gif, write_mp4, write_video, writers
from aiprod_pipelines.video_io.writers import frame_rate, gif_delay_ms

RGB = np.zeros((2, 4, 6, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("fps", "expected"),
    [
        (24, Fraction(24)),
        (np.int64(30), Fraction(30)),
        (12.5, Fraction(25, 2)),
        (29.97, Fraction(2997, 100)),
        (30000 / 1001, Fraction(30000, 1001)),
        (np.float32(25.0), Fraction(25)),
        (Fraction(30000, 1001), Fraction(30000, 1001)),
    ],
)
def test_frame_rate_is_exact(fps: float, expected: Fraction) -> None:
    assert frame_rate(fps, Path("x.mp4")) == expected


@pytest.mark.parametrize("fps", [0, -24, float("nan"), float("inf")])
def test_frame_rate_must_be_positive_and_finite(fps: float) -> None:
    with pytest.raises(VideoIOError, match=r"cannot write x\.mp4: fps must be positive and finite"):
        frame_rate(fps, Path("x.mp4"))


@pytest.mark.parametrize("fps", ["24", None, True, 24j])
def test_frame_rate_must_be_a_number(fps: object) -> None:
    with pytest.raises(VideoIOError, match=r"fps must be a number"):
        frame_rate(fps, Path("x.mp4"))  # type: ignore[arg-type]


@pytest.mark.parametrize(("fps", "delay"), [(10, 100), (25, 40), (24, 40), (15, 70), (50, 20)])
def test_gif_delay_is_rounded_to_centiseconds(fps: int, delay: int) -> None:
    assert gif_delay_ms(Fraction(fps), Path("a.gif")) == delay


@pytest.mark.parametrize("fps", [51, 60, 0.001])
def test_gif_fps_outside_what_gif_can_store_is_rejected(tmp_path: Path, fps: float) -> None:
    with pytest.raises(
        VideoIOError, match=rf"a\.gif: .*fps must be between 0\.0015 and 50, got {fps:g}"
    ):
        write_gif(tmp_path / "a.gif", RGB, fps=fps)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("loop", [-1, 70000, 1.5, True])
def test_gif_loop_must_be_a_small_integer(tmp_path: Path, loop: object) -> None:
    with pytest.raises(VideoIOError, match=r"loop must be an integer 0\.\.65535"):
        write_gif(tmp_path / "a.gif", RGB, fps=10, loop=loop)  # type: ignore[arg-type]


@pytest.mark.parametrize("crf", [-1, 52, 18.0, "18", True])
def test_mp4_crf_must_be_an_integer_in_range(tmp_path: Path, crf: object) -> None:
    with pytest.raises(VideoIOError, match=r"crf must be an integer 0\.\.51"):
        write_mp4(tmp_path / "a.mp4", RGB, fps=24, crf=crf)  # type: ignore[arg-type]


def test_mp4_odd_size_mode_is_checked(tmp_path: Path) -> None:
    with pytest.raises(VideoIOError, match=r"odd_size must be 'pad' or 'error', got 'crop'"):
        write_mp4(tmp_path / "a.mp4", RGB, fps=24, odd_size="crop")  # type: ignore[arg-type]


def test_mp4_odd_size_error_names_size_and_remedy(tmp_path: Path) -> None:
    odd = np.zeros((2, 5, 7, 3), dtype=np.uint8)
    with pytest.raises(
        VideoIOError, match=r"a\.mp4: H\.264 yuv420p needs an even width and height, got 7x5"
    ):
        write_mp4(tmp_path / "a.mp4", odd, fps=24, odd_size="error")
    assert list(tmp_path.iterdir()) == []


def test_mp4_without_h264_encoder_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writers.av, "codecs_available", {"mpeg4"})
    with pytest.raises(VideoIOError, match=r"this PyAV build has no libx264 encoder"):
        write_mp4(tmp_path / "a.mp4", RGB, fps=24)
    assert list(tmp_path.iterdir()) == []


def test_bad_frames_name_the_file_and_write_nothing(tmp_path: Path) -> None:
    with pytest.raises(VideoIOError, match=r"cannot write .*clip\.mp4: expected a 4-D video"):
        write_video(tmp_path / "clip.mp4", np.zeros((4, 4, 3), dtype=np.uint8), fps=24)
    assert list(tmp_path.iterdir()) == []


def test_unsupported_suffix_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(VideoIOError, match=r"clip\.avi: unsupported suffix"):
        write_video(tmp_path / "clip.avi", RGB, fps=24)
    assert list(tmp_path.iterdir()) == []


def test_png_frames_still_validate_fps(tmp_path: Path) -> None:
    with pytest.raises(VideoIOError, match=r"fps must be positive"):
        write_video(tmp_path / "frames", RGB, fps=0)
    assert list(tmp_path.iterdir()) == []
