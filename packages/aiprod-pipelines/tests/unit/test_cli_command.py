"""How ``aiprod-generate`` reports results and failures (no model is run here)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from aiprod_core.errors import ConfigError
from aiprod_core.models import get_preset
from aiprod_pipelines.cli import GenerationResult, command, main
from aiprod_pipelines.pipelines import ImageCondition, ResolvedRequest
from aiprod_pipelines.video_io import VideoIOError, read_video


def result(format: str = "mp4", path: str = "out.mp4") -> GenerationResult:
    return GenerationResult(
        path=Path(path),
        format=format,
        frames=9,
        width=64,
        height=48,
        fps=24,
        seconds=3.21,
        seed=1,
        steps=20,
        guidance_scale=4.0,
        pipeline="text-to-video",
        model={"name": "aiprod-tiny", "source": "checkpoint x", "random_weights": False},
    )


def test_summary_is_the_human_line() -> None:
    assert result().summary() == "wrote out.mp4 (9 frames, 64x48, 24 fps) in 3.2 s"
    assert result("png", "frames").summary() == "wrote frames (9 frames, 64x48) in 3.2 s"


def test_json_has_machine_readable_fields() -> None:
    data = json.loads(result().as_json())

    assert data["path"] == str(Path("out.mp4").resolve())
    assert (data["frames"], data["width"], data["height"], data["fps"]) == (9, 64, 48, 24)
    assert data["seconds"] == 3.21
    assert data["model"]["source"] == "checkpoint x"
    assert data["warnings"] == []
    assert data["images"] == []


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ConfigError("config/AIPROD.json: serving.port: expected an integer"), 2),
        (VideoIOError("cannot write out.mp4: disk full"), 1),
        (PermissionError("cannot write out.mp4: permission denied"), 1),
        (KeyboardInterrupt(), 130),
    ],
)
def test_failures_become_one_error_line_and_an_exit_status(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: BaseException,
    status: int,
) -> None:
    def fail(args: argparse.Namespace, **_: object) -> GenerationResult:
        raise error

    monkeypatch.setattr(command, "generate", fail)

    assert main(["a prompt", "-o", "out.mp4"]) == status
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ")
    assert captured.err.count("\n") == 1
    if not isinstance(error, KeyboardInterrupt):
        assert captured.err == f"error: {error}\n"


def test_multi_line_messages_are_joined_into_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(args: argparse.Namespace, **_: object) -> GenerationResult:
        raise ConfigError("config/env/x.yaml: invalid YAML\n  at line 3")

    monkeypatch.setattr(command, "generate", fail)

    assert main(["p"]) == 2
    assert capsys.readouterr().err == "error: config/env/x.yaml: invalid YAML at line 3\n"


def test_success_prints_summary_or_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(command, "generate", lambda args, **_: result())

    assert main(["p"]) == 0
    assert capsys.readouterr().out == "wrote out.mp4 (9 frames, 64x48, 24 fps) in 3.2 s\n"
    assert main(["p", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["frames"] == 9


@pytest.fixture
def no_model_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if ``aiprod-generate`` gets as far as loading a model."""

    def load_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the output path was checked")

    monkeypatch.setattr(command, "load_model", load_model)


@pytest.mark.fault("cli")
@pytest.mark.usefixtures("no_model_load")
@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("/proc/x.mp4", "-o/--output /proc/x.mp4: cannot write in /proc ("),
        ("/proc/sub/x.mp4", "-o/--output /proc/sub/x.mp4: cannot create a folder in /proc ("),
        ("{file}/x.mp4", "-o/--output {file}/x.mp4: {file} exists and is not a folder"),
        ("{file}/a/x.gif", "-o/--output {file}/a/x.gif: {file} exists and is not a folder"),
        ("clip.txt", "-o/--output clip.txt: unsupported suffix '.txt'"),
    ],
)
def test_a_bad_output_path_exits_2_before_the_model_is_loaded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], output: str, expected: str
) -> None:
    file = tmp_path / "README.md"
    file.write_text("a file, not a folder")
    argv = ["a red circle", "-o", output.format(file=file), "--random-weights", "--preset", "tiny"]

    assert main([*argv, "--device", "cpu", "--width", "32", "--height", "32"]) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: " + expected.format(file=file))
    assert captured.err.count("\n") == 1
    assert "format=" not in captured.err
    assert "RANDOM" not in captured.err  # stopped before the model was even chosen
    assert file.read_text() == "a file, not a folder"


@pytest.mark.fault("cli")
@pytest.mark.usefixtures("no_model_load")
def test_an_unknown_suffix_points_to_the_format_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["a red circle", "-o", "clip.webm", "--random-weights"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "error: -o/--output clip.webm: unsupported suffix '.webm'; expected .mp4, .gif, or a "
        "path without a suffix for a folder of PNG frames, or choose the format with --format "
        "(mp4, gif, png)\n"
    )


RANDOM_TINY = ["--random-weights", "--preset", "tiny", "--device", "cpu"]


def write_png(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> Path:
    Image.new("RGB", size, colour).save(path)
    return path


@pytest.mark.fault("cli")
@pytest.mark.usefixtures("no_model_load")
@pytest.mark.parametrize(
    ("images", "expected"),
    [
        (
            ["{a}@-1"],
            (
                "argument --image: image '{a}@-1': frame -1 is negative; use PATH@FRAME with "
                "FRAME >= 0 (see aiprod-generate --help)"
            ),
        ),
        (["@3"], "argument --image: image '@3' names no file"),
        (["{a}@x"], "--image {a}@x: cannot read {a}@x: unsupported image suffix '.png@x'"),
        (
            ["{folder}/me@x.png"],
            "--image {folder}/me@x.png: cannot read {folder}/me@x.png: no such",
        ),
        (["{a}", "{b}@2", "{missing}@4"], "--image {missing}@4: cannot read {missing}: no such"),
        (
            ["{a}@99"],
            (
                "--image {a}@99: image frame 99 is outside the video: use a frame from 0 to 8 "
                "(frames=9)"
            ),
        ),
        (["{a}@9"], "--image {a}@9: image frame 9 is outside the video"),
        (
            ["{a}@4", "{b}@4"],
            (
                "--image {b}@4: image frames 4 and 4 fall in the same latent frame (frames 3..4 "
                "are encoded together): use one image per group of frames"
            ),
        ),
        (["{a}", "{b}@0"], "--image {b}@0: two images are pinned to frame 0"),
        (["{a}@3", "{b}@8", "{a}@4"], "--image {a}@4: image frames 3 and 4 fall in the same"),
    ],
)
def test_bad_images_exit_2_naming_the_image_before_the_model_is_loaded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], images: list[str], expected: str
) -> None:
    names = {
        "a": write_png(tmp_path / "a.png", (200, 10, 10)),
        "b": write_png(tmp_path / "b.png", (10, 10, 200)),
        "missing": tmp_path / "missing.png",
        "folder": tmp_path,
    }
    out = tmp_path / "out.mp4"
    options = [arg for text in images for arg in ("--image", text.format(**names))]

    assert main(["a ball", "-o", str(out), *RANDOM_TINY, "--frames", "9", *options]) == 2

    captured = capsys.readouterr()
    error = captured.err.splitlines()[-1]  # the random-weights warning may come first
    assert error.startswith("error: " + expected.format(**names))
    assert captured.out == ""
    assert not out.exists()


@pytest.mark.fault("cli")
@pytest.mark.usefixtures("no_model_load")
def test_image_frames_are_checked_against_the_models_default_frame_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames = get_preset("tiny").generation.frames
    image = write_png(tmp_path / "a.png", (200, 10, 10))
    argv = ["a ball", "-o", str(tmp_path / "o.mp4"), *RANDOM_TINY, "--image", f"{image}@{frames}"]

    assert main(argv) == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert f"image frame {frames} is outside the video: use a frame from 0 to {frames - 1}" in error


@pytest.mark.fault("cli")
@pytest.mark.usefixtures("no_model_load")
def test_a_gif_frame_rate_is_checked_before_the_model_is_loaded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["a ball", "-o", str(tmp_path / "o.gif"), *RANDOM_TINY, "--fps", "60"]) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith("error: --fps 60: ")


@pytest.fixture
def stub_generation(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Load nothing and generate black frames; record what the pipeline was given."""
    seen: dict[str, Any] = {}

    def load_model(*args: object, **kwargs: object) -> SimpleNamespace:
        return SimpleNamespace(model=None, model_config=get_preset("tiny"), source="stub")

    def run_pipeline(
        loaded: object,
        request: ResolvedRequest,
        args: object,
        images: list[ImageCondition],
        device: torch.device,
        dtype: torch.dtype,
    ) -> SimpleNamespace:
        seen["request"], seen["images"] = request, images
        seen["device"], seen["dtype"] = device, dtype
        shape = (request.frames, request.height, request.width, 3)
        return SimpleNamespace(frames=torch.zeros(shape, dtype=torch.uint8))

    monkeypatch.setattr(command, "load_model", load_model)
    monkeypatch.setattr(command, "_run_pipeline", run_pipeline)
    return seen


def test_values_left_out_come_from_the_model_and_are_used_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], stub_generation: dict[str, Any]
) -> None:
    tiny = get_preset("tiny")
    defaults = tiny.generation
    first = write_png(tmp_path / "first.png", (200, 10, 10))
    last = write_png(tmp_path / "last.png", (10, 10, 200), size=(16, 20))
    out = tmp_path / "out.mp4"
    argv = ["a ball", "-o", str(out), *RANDOM_TINY, "--json", "--quiet"]
    images = ["--image", str(first), "--image", f"{last}@{defaults.frames - 1}"]

    assert main([*argv, *images]) == 0

    result = json.loads(capsys.readouterr().out)
    sizes = (result["width"], result["height"], result["frames"], result["fps"])
    assert sizes == (defaults.width, defaults.height, defaults.frames, defaults.fps)
    assert result["steps"] == tiny.diffusion.default_steps
    assert result["guidance_scale"] == tiny.diffusion.default_guidance
    assert result["pipeline"] == "image-to-video"
    assert result["images"] == [
        {"path": str(first), "frame": 0},
        {"path": str(last), "frame": defaults.frames - 1},
    ]
    request = stub_generation["request"]
    assert isinstance(request, ResolvedRequest)
    assert (request.width, request.height, request.frames, request.fps) == sizes
    conditions = stub_generation["images"]
    assert [condition.frame for condition in conditions] == [0, defaults.frames - 1]
    assert conditions[0].image.shape == (30, 40, 3)  # read up front, as uint8 pixels
    assert np.all(conditions[1].image == np.array([10, 10, 200], dtype=np.uint8))
    _, fps, meta = read_video(out)
    assert (meta.frame_count, meta.width, meta.height) == (
        defaults.frames,
        defaults.width,
        defaults.height,
    )
    assert fps == defaults.fps


def test_given_values_override_the_models_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], stub_generation: dict[str, Any]
) -> None:
    out = tmp_path / "out.mp4"
    sizes = ["--width", "48", "--height", "16", "--frames", "5", "--fps", "12", "--steps", "3"]

    assert main(["a ball", "-o", str(out), *RANDOM_TINY, *sizes, "--json", "--quiet"]) == 0

    result = json.loads(capsys.readouterr().out)
    assert (result["width"], result["height"], result["frames"], result["fps"]) == (48, 16, 5, 12)
    assert (result["steps"], result["pipeline"], result["images"]) == (3, "text-to-video", [])
    assert stub_generation["images"] == []
    assert read_video(out)[1] == 12
