"""``aiprod-generate`` end to end: the tiny preset on the CPU, real files, read back.

Videos are written by PyAV (MP4) or Pillow (GIF, PNG) and read back here with another
library: imageio-ffmpeg's own ffmpeg for MP4, Pillow for GIF and PNG frames. Runs use tiny
sizes and two or three denoising steps so each takes well under a second.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aiprod_core.checkpoints import save_checkpoint
from aiprod_core.config import find_config_dir
from aiprod_core.models import build_model, get_preset
from aiprod_pipelines.cli import main

pytestmark = pytest.mark.integration

#: A fast request: 5 frames of 32x32 with 2 steps, on the CPU, without a progress bar.
FAST = ["--width", "32", "--height", "32", "--frames", "5", "--steps", "2", "--device", "cpu"]
RANDOM = ["--random-weights", "--preset", "tiny"]
WARNING = "using RANDOM, UNTRAINED weights of preset tiny: the video will be noise"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``main(argv)`` and what it printed: (exit status, stdout, stderr)."""
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A copy of the repository's config/ under ``tmp_path`` (so models/ and outputs/ are too)."""
    source = find_config_dir(start=Path(__file__).parent, environ={})
    copy = tmp_path / "repo" / "config"
    shutil.copytree(source, copy)
    return copy


def ffmpeg_decode(path: Path, width: int, height: int) -> tuple[np.ndarray, float]:
    """Frames of ``path`` decoded by imageio-ffmpeg's ffmpeg, and its frames per second."""
    imageio_ffmpeg = pytest.importorskip(
        "imageio_ffmpeg", reason="imageio-ffmpeg (test-only) provides an independent ffmpeg"
    )
    raw = subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            *("-v", "error", "-i", str(path)),
            *("-f", "rawvideo", "-pix_fmt", "rgb24", "-"),
        ],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    assert len(raw) % (height * width * 3) == 0, "decoded size does not match width x height"
    frames = np.frombuffer(raw, dtype=np.uint8).reshape(-1, height, width, 3)
    info = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
        capture_output=True,
        text=True,
        check=False,  # ffmpeg exits 1 without an output file, after printing the stream info
        timeout=60,
    ).stderr
    rate = re.search(r"Video: .*?, ([0-9.]+) fps", info)
    assert rate is not None, info
    return frames, float(rate.group(1))


def gif_frames(path: Path) -> tuple[list[np.ndarray], list[int]]:
    """Pillow's view of a GIF: RGB frames and their durations in ms."""
    frames, durations = [], []
    with Image.open(path) as image:
        for index in range(image.n_frames):
            image.seek(index)
            frames.append(np.asarray(image.convert("RGB")))
            durations.append(int(image.info["duration"]))
    return frames, durations


def test_mp4_is_written_with_requested_frames_size_and_fps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "clips" / "out.mp4"
    status, stdout, stderr = run(
        capsys, "a red circle moving left", "-o", str(out), *RANDOM, *FAST, "--fps", "12"
    )

    assert status == 0, stderr
    assert WARNING in stderr.splitlines()
    assert stdout.startswith(f"wrote {out} (5 frames, 32x32, 12 fps) in ")
    assert stdout.rstrip().endswith(" s")
    frames, fps = ffmpeg_decode(out, 32, 32)
    assert frames.shape == (5, 32, 32, 3)
    assert fps == pytest.approx(12)
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.mp4"]  # no temp files left


def test_progress_bar_is_shown_unless_quiet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, shown = run(capsys, "dots", "-o", str(tmp_path / "a.mp4"), *RANDOM, *FAST)
    _, _, quiet = run(capsys, "dots", "-o", str(tmp_path / "b.mp4"), *RANDOM, *FAST, "--quiet")

    assert "2/2" in shown
    assert "2/2" not in quiet
    assert WARNING in quiet  # --quiet hides progress, never the random-weights warning


def test_gif_output_read_back_with_pillow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.gif"
    status, stdout, _ = run(capsys, "waves", "-o", str(out), *RANDOM, *FAST, "--fps", "10")

    assert status == 0
    assert stdout.startswith(f"wrote {out} (5 frames, 32x32, 10 fps)")
    frames, durations = gif_frames(out)
    assert 1 <= len(frames) <= 5  # Pillow merges identical consecutive frames
    assert frames[0].shape == (32, 32, 3)
    assert sum(durations) == 5 * 100


def test_png_frames_folder_by_format_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "frames"
    status, stdout, _ = run(capsys, "waves", "-o", str(out), "--format", "png", *RANDOM, *FAST)

    assert status == 0
    assert stdout.startswith(f"wrote {out} (5 frames, 32x32) in ")
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"frame_{i:05d}.png" for i in range(5)]
    with Image.open(out / names[0]) as first:
        assert first.size == (32, 32)
        assert first.mode == "RGB"


def test_json_result_describes_the_file_and_random_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.mp4"
    status, stdout, stderr = run(capsys, "waves", "-o", str(out), *RANDOM, *FAST, "--json")

    assert status == 0
    result = json.loads(stdout)
    assert result["path"] == str(out.resolve())
    assert (result["format"], result["frames"], result["width"], result["height"]) == (
        "mp4",
        5,
        32,
        32,
    )
    assert result["fps"] == get_preset("tiny").generation.fps  # the model's default
    assert result["seconds"] > 0
    assert (result["seed"], result["steps"]) == (0, 2)
    assert result["guidance_scale"] == get_preset("tiny").diffusion.default_guidance
    assert result["pipeline"] == "text-to-video"
    assert result["model"]["random_weights"] is True
    assert result["model"]["name"] is None  # no registry model was asked for
    assert result["model"]["preset"] == "tiny"
    assert result["model"]["source"] == "random weights (untrained)"
    assert result["warnings"] == [WARNING]
    assert WARNING in stderr


def test_same_seed_gives_identical_frames_and_another_seed_does_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = {}
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        outputs[name] = tmp_path / f"{name}.gif"
        status, _, _ = run(
            capsys, "a red circle", "-o", str(outputs[name]), *RANDOM, *FAST, "--seed", seed
        )
        assert status == 0
    decoded = {name: np.stack(gif_frames(path)[0]) for name, path in outputs.items()}

    assert np.array_equal(decoded["a"], decoded["b"])
    assert decoded["a"].shape != decoded["c"].shape or not np.array_equal(
        decoded["a"], decoded["c"]
    )


def test_existing_output_is_kept_unless_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.mp4"
    out.write_bytes(b"precious")

    status, stdout, stderr = run(capsys, "waves", "-o", str(out), *RANDOM, *FAST)

    assert status == 2
    assert stdout == ""
    assert stderr == (
        f"error: {out} already exists; pass --overwrite to replace it or choose another -o\n"
    )
    assert out.read_bytes() == b"precious"

    status, _, _ = run(capsys, "waves", "-o", str(out), *RANDOM, *FAST, "--overwrite")
    assert status == 0
    assert ffmpeg_decode(out, 32, 32)[0].shape == (5, 32, 32, 3)


def test_overwrite_replaces_a_png_frames_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "frames"
    out.mkdir()
    for index in range(7):
        (out / f"frame_{index:05d}.png").write_bytes(b"old")

    status, _, _ = run(
        capsys, "waves", "-o", str(out), "--format", "png", *RANDOM, *FAST, "--overwrite"
    )

    assert status == 0
    assert sorted(p.name for p in out.iterdir()) == [f"frame_{i:05d}.png" for i in range(5)]


def test_invalid_size_names_the_nearest_valid_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.mp4"
    status, stdout, stderr = run(capsys, "waves", "-o", str(out), *RANDOM, *FAST, "--width", "30")

    assert status == 2
    assert stdout == ""
    error = stderr.splitlines()[-1]
    assert error.startswith("error: width=30 ")
    assert "multiple of 8" in error
    assert "24 or 32" in error
    assert "Traceback" not in stderr
    assert not out.exists()


def test_invalid_frame_count_names_the_nearest_valid_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, stderr = run(
        capsys, "waves", "-o", str(tmp_path / "o.mp4"), *RANDOM, *FAST, "--frames", "6"
    )

    assert status == 2
    assert stderr.splitlines()[-1].startswith("error: frames=6 ")
    assert "5 or 7" in stderr


def test_two_stage_size_must_fit_its_half_size_stage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, stderr = run(
        capsys, "waves", "-o", str(tmp_path / "o.mp4"), *RANDOM, *FAST, "--two-stage"
    )  # 32 fits the model, but the first stage would run at 16: fine; 40 would not

    assert status == 0, stderr
    status, _, stderr = run(
        capsys,
        "waves",
        "-o",
        str(tmp_path / "p.mp4"),
        *RANDOM,
        *FAST,
        "--two-stage",
        "--width",
        "40",
    )
    assert status == 2
    assert "error: width=40 does not fit two-stage generation" in stderr


def test_two_stage_writes_the_full_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.gif"
    status, stdout, _ = run(
        capsys,
        "waves",
        "-o",
        str(out),
        *RANDOM,
        *FAST,
        "--two-stage",
        "--refine-steps",
        "1",
        "--json",
    )

    assert status == 0
    result = json.loads(stdout)
    assert (result["pipeline"], result["width"], result["height"]) == ("two-stage", 32, 32)
    assert gif_frames(out)[0][0].shape == (32, 32, 3)


def test_sizes_left_out_are_the_models_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.mp4"
    status, stdout, stderr = run(
        capsys, "waves", "-o", str(out), *RANDOM, "--steps", "1", "--device", "cpu", "--json"
    )

    assert status == 0, stderr
    defaults = get_preset("tiny").generation
    result = json.loads(stdout)
    assert (result["width"], result["height"], result["frames"], result["fps"]) == (
        defaults.width,
        defaults.height,
        defaults.frames,
        defaults.fps,
    )
    frames, fps = ffmpeg_decode(out, defaults.width, defaults.height)
    assert frames.shape == (defaults.frames, defaults.height, defaults.width, 3)
    assert fps == pytest.approx(defaults.fps)


@pytest.mark.parametrize("keyframes", [["start.png"], ["start.png", "end.png@4"]])
def test_image_to_video_starts_from_the_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keyframes: list[str]
) -> None:
    Image.new("RGB", (48, 40), (200, 30, 30)).save(tmp_path / "start.png")
    Image.new("RGB", (40, 48), (30, 30, 200)).save(tmp_path / "end.png")
    images = [arg for name in keyframes for arg in ("--image", str(tmp_path / name))]
    out = tmp_path / "out.mp4"

    status, stdout, stderr = run(
        capsys, "it moves", *images, "-o", str(out), *RANDOM, *FAST, "--json"
    )

    assert status == 0, stderr
    result = json.loads(stdout)
    assert result["pipeline"] == "image-to-video"
    assert [image["frame"] for image in result["images"]] == [0, 4][: len(keyframes)]
    frames, _ = ffmpeg_decode(out, 32, 32)
    assert frames.shape == (5, 32, 32, 3)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("missing.png", None, "missing.png"),
        ("broken.png", b"not a png", "broken.png"),
        ("picture.bmp", b"BM", "unsupported image suffix '.bmp'"),
    ],
)
def test_unreadable_image_is_a_usage_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: bytes | None,
    expected: str,
) -> None:
    image = tmp_path / name
    if content is not None:
        image.write_bytes(content)

    status, _, stderr = run(
        capsys, "it moves", "--image", str(image), "-o", str(tmp_path / "o.mp4"), *RANDOM, *FAST
    )

    assert status == 2
    assert len(stderr.splitlines()) == 1
    assert stderr.startswith(f"error: --image {image}: cannot read ")
    assert expected in stderr


def test_missing_weights_name_the_expected_path_and_how_to_get_them(
    config_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.mp4"
    status, stdout, stderr = run(
        capsys, "waves", "-o", str(out), "--config-dir", str(config_dir), *FAST
    )

    expected = config_dir.parent / "models" / "checkpoints" / "aiprod-tiny.safetensors"
    assert status == 1
    assert stdout == ""
    assert len(stderr.splitlines()) == 1
    assert stderr.startswith("error: model 'aiprod-tiny': weights file ")
    assert str(expected) in stderr
    assert "nox -s demo" in stderr  # the registry's "obtain" hint
    assert "--random-weights" in stderr
    assert not out.exists()


def test_config_dir_from_the_environment(
    config_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIPROD_CONFIG_DIR", str(config_dir))
    status, _, stderr = run(capsys, "waves", "-o", str(tmp_path / "o.mp4"), *FAST)

    assert status == 1
    assert str(config_dir.parent / "models" / "checkpoints") in stderr


def test_registry_model_is_loaded_when_its_weights_are_in_place(
    config_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = get_preset("tiny")
    weights = config_dir.parent / "models" / "checkpoints" / "aiprod-tiny.safetensors"
    torch.manual_seed(0)
    save_checkpoint(build_model(config), config, weights)

    status, stdout, stderr = run(
        capsys,
        "waves",
        "-o",
        str(tmp_path / "o.mp4"),
        "--config-dir",
        str(config_dir),
        "--model",
        "aiprod-tiny",
        *FAST,
        "--json",
    )

    assert status == 0, stderr
    model = json.loads(stdout)["model"]
    assert model["name"] == "aiprod-tiny"
    assert model["random_weights"] is False
    assert str(weights) in model["source"]
    assert json.loads(stdout)["warnings"] == []
    assert "RANDOM" not in stderr


def test_checkpoint_file_is_loaded_and_its_config_validates_the_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = get_preset("tiny")
    checkpoint = tmp_path / "run.safetensors"
    save_checkpoint(build_model(config), config, checkpoint)

    status, stdout, _ = run(
        capsys,
        "waves",
        "-o",
        str(tmp_path / "o.gif"),
        "--checkpoint",
        str(checkpoint),
        *FAST,
        "--json",
    )
    assert status == 0
    assert json.loads(stdout)["model"]["checkpoint"] == str(checkpoint)

    status, _, stderr = run(
        capsys,
        "waves",
        "-o",
        str(tmp_path / "p.gif"),
        "--checkpoint",
        str(checkpoint),
        *FAST,
        "--height",
        "12",
    )
    assert status == 2
    assert "error: height=12 " in stderr


def test_missing_checkpoint_is_a_runtime_error_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = tmp_path / "nowhere.safetensors"
    status, _, stderr = run(
        capsys, "waves", "-o", str(tmp_path / "o.mp4"), "--checkpoint", str(checkpoint), *FAST
    )

    assert status == 1
    assert stderr.startswith("error: ")
    assert str(checkpoint) in stderr
    assert len(stderr.splitlines()) == 1


def test_default_output_goes_to_the_configured_outputs_folder(
    config_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, stdout, _ = run(
        capsys, "A Red Circle!", "--config-dir", str(config_dir), *RANDOM, *FAST, "--seed", "5"
    )

    expected = config_dir.parent / "outputs" / "a-red-circle-seed5.mp4"
    assert status == 0
    assert stdout.startswith(f"wrote {expected} ")
    assert expected.is_file()


def test_env_overlay_is_passed_to_the_config_and_unknown_ones_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, stderr = run(
        capsys, "waves", "-o", str(tmp_path / "o.mp4"), *RANDOM, *FAST, "--env", "nowhere"
    )

    assert status == 2
    assert stderr.startswith("error: AIPROD_ENV='nowhere' is not a known environment")
    assert "development" in stderr

    status, _, _ = run(
        capsys, "waves", "-o", str(tmp_path / "o.mp4"), *RANDOM, *FAST, "--env", "production"
    )
    assert status == 0


def test_unknown_preset_and_model_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "o.mp4")
    status, _, stderr = run(capsys, "w", "-o", out, "--random-weights", "--preset", "huge", *FAST)
    assert status == 2
    assert "unknown model preset 'huge'" in stderr
    assert "tiny" in stderr

    status, _, stderr = run(capsys, "w", "-o", out, "--model", "nope", *FAST)
    assert status == 2
    assert stderr.startswith("error: --model: model 'nope' is not in the registry")


def test_random_weights_default_to_the_registry_models_preset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, stdout, stderr = run(
        capsys, "w", "-o", str(tmp_path / "o.mp4"), "--random-weights", *FAST, "--json"
    )

    assert status == 0
    assert json.loads(stdout)["model"]["preset"] == "tiny"
    assert WARNING in stderr


def test_console_script_runs_in_a_fresh_process(tmp_path: Path) -> None:
    script = shutil.which("aiprod-generate", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the aiprod-generate console script is not installed beside this python")
    out = tmp_path / "o.gif"
    completed = subprocess.run(
        [script, "waves", "-o", str(out), *RANDOM, *FAST, "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    fps = get_preset("tiny").generation.fps
    assert completed.stdout.startswith(f"wrote {out} (5 frames, 32x32, {fps} fps)")
    assert completed.stderr.strip() == WARNING
    assert out.is_file()
