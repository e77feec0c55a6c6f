"""read_video on containers video_io does not write, on ffmpeg-made files, and on bad files."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import ModuleType, SimpleNamespace

import av
import numpy as np
import pytest

from aiprod_pipelines.video_io import VideoIOError, read_video, to_uint8_frames, write_mp4
from aiprod_pipelines.video_io.readers import _frame_rate

pytestmark = pytest.mark.integration

#: Mean absolute error bound after a lossy round trip of the smooth clip.
MAX_MEAN_ABS_ERROR = 3.0


@pytest.mark.parametrize(
    ("suffix", "container_format", "codec", "decoder"),
    [
        ("webm", "webm", "libvpx-vp9", "vp9"),
        ("mkv", "matroska", "ffv1", "ffv1"),
        ("avi", "avi", "mpeg4", "mpeg4"),
        ("mov", "mov", "libx264", "h264"),
    ],
)
def test_reads_other_containers(
    tmp_path: Path,
    clips: ModuleType,
    smooth_clip: np.ndarray,
    suffix: str,
    container_format: str,
    codec: str,
    decoder: str,
) -> None:
    source = to_uint8_frames(smooth_clip)
    path = clips.write_with_pyav(
        tmp_path / f"clip.{suffix}", source, fps=25, container_format=container_format, codec=codec
    )
    frames, fps, meta = read_video(path)
    assert frames.shape == source.shape
    assert fps == 25.0
    assert meta.codec == decoder
    assert meta.format == suffix
    error = np.abs(frames.astype(int) - source.astype(int)).mean()
    assert error < MAX_MEAN_ABS_ERROR


def test_reads_a_video_made_by_the_ffmpeg_binary(tmp_path: Path) -> None:
    imageio_ffmpeg = pytest.importorskip(
        "imageio_ffmpeg", reason="imageio-ffmpeg (test-only) provides an independent ffmpeg"
    )
    path = tmp_path / "testsrc.mp4"
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            *("-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=15:duration=1"),
            *("-pix_fmt", "yuv420p", str(path)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    frames, fps, meta = read_video(path)
    assert frames.shape == (15, 48, 64, 3)
    assert fps == 15.0
    assert meta.duration_s == pytest.approx(1.0, abs=0.01)
    assert not np.array_equal(frames[0], frames[-1])


def test_explicit_format_for_a_file_without_suffix(tmp_path: Path, smooth_clip: np.ndarray) -> None:
    path = write_mp4(tmp_path / "clip.mp4", smooth_clip[:3], fps=24)
    blob = path.rename(tmp_path / "blob")
    frames, _, meta = read_video(blob, format="mp4")
    assert frames.shape == (3, 48, 64, 3)
    assert meta.format == "mp4"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(
        VideoIOError, match=r"gone\.mp4: no such file; expected a video file in mp4 format"
    ):
        read_video(tmp_path / "gone.mp4")


def test_folder_points_to_read_png_frames(tmp_path: Path) -> None:
    with pytest.raises(VideoIOError, match=r"it is a folder; use read_png_frames\(\)"):
        read_video(tmp_path)


def test_unsupported_suffix(tmp_path: Path) -> None:
    (tmp_path / "clip.flv").write_bytes(b"x")
    with pytest.raises(VideoIOError, match=r"clip\.flv: unsupported video suffix '\.flv'"):
        read_video(tmp_path / "clip.flv")


@pytest.mark.parametrize("content", [b"", b"this is not a video" * 50])
def test_garbage_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "junk.mp4"
    path.write_bytes(content)
    with pytest.raises(
        VideoIOError, match=r"junk\.mp4: not a readable mp4 file \(.+\); expected a video"
    ):
        read_video(path)


def test_truncated_mp4(tmp_path: Path, smooth_clip: np.ndarray) -> None:
    path = write_mp4(tmp_path / "cut.mp4", smooth_clip, fps=24)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoIOError, match=r"cut\.mp4: not a readable mp4 file"):
        read_video(path)


def test_mislabelled_file(tmp_path: Path, palette_clip: np.ndarray, clips: ModuleType) -> None:
    from aiprod_pipelines.video_io import write_gif

    path = write_gif(tmp_path / "anim.gif", palette_clip, fps=10).rename(tmp_path / "anim.mp4")
    with pytest.raises(VideoIOError, match=r"anim\.mp4: not a readable mp4 file"):
        read_video(path)


class FirstFramesOnly:
    """Wraps an input container so decoding stops early, as a damaged stream would."""

    def __init__(self, container: av.container.InputContainer, keep: int) -> None:
        self._container = container
        self._keep = keep

    def __getattr__(self, name: str) -> object:
        return getattr(self._container, name)

    def __enter__(self) -> FirstFramesOnly:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._container.close()

    def decode(self, *streams: object) -> Iterator[av.VideoFrame]:
        for index, frame in enumerate(self._container.decode(*streams)):
            if index < self._keep:
                yield frame


def test_declared_frames_that_cannot_be_decoded(
    tmp_path: Path, smooth_clip: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_mp4(tmp_path / "short.mp4", smooth_clip, fps=24)
    real_open = av.open
    monkeypatch.setattr(
        av, "open", lambda *args, **kwargs: FirstFramesOnly(real_open(*args, **kwargs), keep=5)
    )
    with pytest.raises(
        VideoIOError,
        match=r"short\.mp4: the file is truncated or corrupt; the container declares 12 "
        r"frames but only 5 could be decoded",
    ):
        read_video(path)


def test_audio_only_file(tmp_path: Path, clips: ModuleType) -> None:
    path = clips.write_audio_only_mkv(tmp_path / "sound.mkv")
    with pytest.raises(VideoIOError, match=r"sound\.mkv: it holds no video stream"):
        read_video(path)


def test_video_stream_without_frames(tmp_path: Path, clips: ModuleType) -> None:
    path = clips.write_frameless_video_mkv(tmp_path / "empty.mkv")
    with pytest.raises(VideoIOError, match=r"empty\.mkv: the video stream holds no frames"):
        read_video(path)


def test_frame_rate_falls_back_to_guess_then_duration() -> None:
    source = Path("x.mkv")
    unknown = SimpleNamespace(average_rate=None, guessed_rate=None)
    assert (
        _frame_rate(
            SimpleNamespace(average_rate=None, guessed_rate=Fraction(25)),
            SimpleNamespace(duration=None),
            10,
            source,
        )
        == 25
    )
    assert _frame_rate(unknown, SimpleNamespace(duration=2 * av.time_base), 50, source) == 25
    with pytest.raises(VideoIOError, match=r"x\.mkv: the file stores no frame rate or duration"):
        _frame_rate(unknown, SimpleNamespace(duration=None), 10, source)
