"""How ``aiprod-generate`` reports results and failures (no model is run here)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from aiprod_core.errors import ConfigError
from aiprod_pipelines.cli import GenerationResult, command, main
from aiprod_pipelines.video_io import VideoIOError


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
