"""The memory benchmark measures the tiny preset's real peaks and compares them with the plan."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType

import pytest

MIB = 2**20


@pytest.fixture(scope="module")
def bench(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("testing/measure_memory.py")


def test_plan_of_a_case(bench: ModuleType) -> None:
    settings = bench.plan_settings("tiny", "train-checkpointing", "cpu")
    assert (settings.mode, settings.device, settings.compute_dtype) == ("train", "cpu", "float32")
    assert settings.activation_checkpointing
    assert (settings.frames, settings.height, settings.width, settings.batch) == (33, 128, 128, 2)
    assert bench.plan_settings("small", "generate", "cuda").batch == 1
    tensors, total, tokens = bench.estimate("tiny", "train", "cpu")
    assert tokens == 17 * 16 * 16  # latent 17x32x32 in 1x2x2 patches
    assert 0 < tensors < total


def test_tiny_cases_measured_against_the_plan(
    bench: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    code = bench.main(["--preset", "tiny", "--mode", "train", "--mode", "generate", "--json"])
    assert code == 0
    results = json.loads(capsys.readouterr().out)
    assert [(r["preset"], r["mode"], r["device"]) for r in results] == [
        ("tiny", "train", "cpu"),
        ("tiny", "generate", "cpu"),
    ]
    for result in results:
        assert result["measured_tensors"] > 50 * MIB  # activations of 4,352 tokens
        assert result["tensor_error"] == pytest.approx(
            (result["estimate"] - result["measured_tensors"]) / result["measured_tensors"],
            abs=1e-4,
        )
        # docs/PERFORMANCE.md: tiny within 10 % of the profiler's peak, 25 % of the RSS.
        assert abs(result["tensor_error"]) < 0.10
        assert abs(result["total_error"]) < 0.25
        assert result["total_kind"] == "process peak RSS"
        assert result["before_model"] > 0


def test_markdown_table(bench: ModuleType) -> None:
    result = bench.Result(
        preset="small", mode="train", device="cpu", video=(17, 256, 256), batch=1, tokens=1280,
        estimate=4221 * MIB, measured_tensors=4180 * MIB, estimate_total=5254 * MIB,
        measured_total=5312 * MIB, before_model=299 * MIB, total_kind="process peak RSS",
    )  # fmt: skip
    row = bench.table([result]).splitlines()[2]
    assert row == (
        "| small | train | cpu | 1 x 17x256x256 | 1,280 | 4,221 / 4,180 | +1.0% "
        "| 5,254 / 5,312 | -1.1% | process peak RSS |"
    )


def test_in_process_measures_one_case(
    bench: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main(["--preset", "tiny", "--in-process"]) == 2
    assert "--in-process measures one case" in capsys.readouterr().err


def test_cuda_requested_without_a_device(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench.main(["--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


@pytest.mark.gpu
def test_tiny_training_on_cuda(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    code = bench.main(["--preset", "tiny", "--mode", "train", "--device", "cuda", "--json"])
    assert code == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["total_kind"] == "CUDA peak reserved"
    assert result["measured_tensors"] > 0
    assert abs(result["tensor_error"]) < 0.5
