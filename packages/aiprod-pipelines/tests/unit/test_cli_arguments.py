"""``aiprod-generate``'s command line: help, entry point, and the checks made before any work.

Nothing here loads a model or writes a video: every case stops at parsing (or is the
parsed namespace itself).
"""

from __future__ import annotations

import runpy
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch

from aiprod_core.models import get_preset
from aiprod_pipelines.cli import main
from aiprod_pipelines.cli.arguments import DTYPES, ImageOption, UsageError, parse_arguments


def test_console_script_entry_point_resolves_to_main() -> None:
    (script,) = entry_points(group="console_scripts", name="aiprod-generate")

    assert script.value == "aiprod_pipelines.cli:main"
    assert script.load() is main


def test_help_shows_examples_and_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    text = capsys.readouterr().out

    assert text.startswith("usage: aiprod-generate ")
    assert "examples:\n" in text
    assert '  aiprod-generate "a red circle moving left" -o circle.mp4\n' in text
    assert "--random-weights --preset tiny" in text
    assert "exit status:" in text
    assert "--image first.png --image last.png@8" in text
    # sizes come from the model, so --help names no fixed number for them
    assert "frame width in pixels (default: the model's)" in text
    assert "number of frames (default: the model's)" in text
    assert "frames per second (default: the model's)" in text
    tiny = get_preset("tiny").generation
    sizes = f"{tiny.width}x{tiny.height}, {tiny.frames} frames at {tiny.fps} fps"
    assert f"e.g. {sizes} for the tiny preset" in " ".join(text.split())
    assert "refinement steps of --two-stage (4)" in text


def test_python_dash_m_runs_the_same_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["aiprod-generate", "--help"])
    with pytest.raises(SystemExit) as exited:
        runpy.run_module("aiprod_pipelines.cli", run_name="__main__")

    assert exited.value.code == 0
    assert "examples:" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: prompt"),
        (["  "], "the prompt is empty"),
        (["p", "--frames", "0"], "argument --frames: expected an integer >= 1, got '0'"),
        (["p", "--width", "wide"], "argument --width: expected an integer, got 'wide'"),
        (["p", "--seed", "-1"], "argument --seed: expected an integer >= 0, got '-1'"),
        (["p", "--format", "webm"], "argument --format: invalid choice: 'webm'"),
        (["p", "--dtype", "int8"], "argument --dtype: invalid choice: 'int8'"),
        (["p", "--guidance", "0.5"], "--guidance must be >= 1"),
        (["p", "--guidance", "nan"], "--guidance must be >= 1"),
        (["p", "--model", "m", "--checkpoint", "c.safetensors"], "--checkpoint and --model"),
        (["p", "--checkpoint", "c.st", "--random-weights"], "--checkpoint and --random-weights"),
        (["p", "--image", "i.png", "--two-stage"], "--image and --two-stage cannot be used"),
        (["p", "--image", "a.png@9", "--two-stage"], "--image and --two-stage cannot be used"),
        (["p", "--preset", "tiny"], "--preset only applies with --random-weights"),
        (["p", "--refine-steps", "2"], "--refine-steps only applies with --two-stage"),
        (["p", "--device", "toaster"], "--device 'toaster' is not a torch device"),
        (["p", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()

    assert captured.out == ""
    assert captured.err.startswith("error: ")
    assert message in captured.err
    assert captured.err.endswith("(see aiprod-generate --help)\n")
    assert captured.err.count("\n") == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_cuda_device_without_cuda_is_refused() -> None:
    with pytest.raises(UsageError, match="--device cuda: CUDA is not available"):
        parse_arguments(["p", "--device", "cuda"])


def test_cuda_index_beyond_the_devices_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)

    with pytest.raises(UsageError, match=r"has 2 CUDA device\(s\), cuda:0..cuda:1"):
        parse_arguments(["p", "--device", "cuda:2"])
    assert parse_arguments(["p", "--device", "cuda:1"]).torch_device == torch.device("cuda:1")
    assert parse_arguments(["p", "--device", "cuda"]).torch_device == torch.device("cuda")


def test_parsed_namespace_carries_torch_device_and_dtype() -> None:
    args = parse_arguments(["p", "--device", "cpu", "--dtype", "bf16", "--two-stage"])

    assert args.torch_device == torch.device("cpu")
    assert args.torch_dtype is torch.bfloat16
    assert args.two_stage
    assert args.seed == 0

    plain = parse_arguments(["p"])
    assert plain.torch_device is None
    assert plain.torch_dtype is None  # the device's default: resolve_precision
    assert plain.offload_text_encoder is False
    assert parse_arguments(["p", "--offload-text-encoder"]).offload_text_encoder is True
    assert plain.output is None
    assert plain.width is None  # the model's default applies
    assert plain.image is None


def test_image_is_repeatable_and_keeps_each_frame() -> None:
    args = parse_arguments(["p", "--image", "a.png@4", "--image", "a.png@4", "--image", "b.jpg"])

    assert args.image == [
        ImageOption("a.png@4", Path("a.png"), 4),
        ImageOption("a.png@4", Path("a.png"), 4),  # a clash is refused once frames are known
        ImageOption("b.jpg", Path("b.jpg"), 0),
    ]


@pytest.mark.parametrize(
    ("text", "path", "frame"),
    [
        ("a.png@x", "a.png@x", 0),  # not a number: the whole text is the path
        ("me@2x.png", "me@2x.png", 0),
        ("dir@1/a.png@16", "dir@1/a.png", 16),
        ("a.png@007", "a.png", 7),
    ],
)
def test_image_frame_suffix_is_only_a_number(text: str, path: str, frame: int) -> None:
    assert parse_arguments(["p", "--image", text]).image == [ImageOption(text, Path(path), frame)]


@pytest.mark.parametrize(("name", "dtype"), sorted(DTYPES.items()))
def test_every_dtype_name_maps_to_a_floating_dtype(name: str, dtype: torch.dtype) -> None:
    assert parse_arguments(["p", "--dtype", name]).torch_dtype is dtype
    assert dtype.is_floating_point
