"""The model benchmark measures a real training step of the tiny preset and reports it."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType

import pytest


@pytest.fixture
def bench(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("testing/benchmark_model.py")


def test_token_grid_follows_the_vae_and_patch(bench: ModuleType) -> None:
    from aiprod_core.models import get_preset

    assert bench.token_grid(get_preset("tiny"), (17, 64, 64)) == (9, 8, 8)
    assert bench.token_grid(get_preset("small"), (33, 256, 256)) == (9, 16, 16)
    assert bench.token_grid(get_preset("aiprod-19b"), (121, 768, 1280)) == (16, 24, 40)


def test_workload_by_device(bench: ModuleType) -> None:
    assert bench.workload("small", "cpu", None) == ((9, 128, 128), 1)
    assert bench.workload("small", "cuda", None) == ((33, 256, 256), 8)
    assert bench.workload("tiny", "cpu", 2) == ((17, 64, 64), 2)


def test_summarize(bench: ModuleType) -> None:
    step, per_second, tflops, mfu = bench.summarize([2.0, 1.0, 3.0], 1000, 4e12, 8.0)
    assert (step, per_second, tflops, mfu) == (2.0, 500.0, 2.0, 0.25)
    assert bench.summarize([1.0], 10, 1e12, None)[3] is None


def test_tiny_training_step_on_cpu(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    code = bench.main(["--preset", "tiny", "--steps", "1", "--warmup", "0", "--batch", "1",
                       "--device", "cpu", "--json"])  # fmt: skip
    assert code == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["preset"] == "tiny"
    assert result["dtype"] == "fp32"
    assert result["tokens_per_sample"] == 9 * 8 * 8
    assert result["parameters"] > 100_000
    assert result["tokens_per_second"] == pytest.approx(576 / result["step_seconds"])
    assert result["tflops"] > 0
    assert result["mfu"] is None
    assert result["memory_kind"] == "process peak RSS"


def test_markdown_table(bench: ModuleType) -> None:
    result = bench.Result(
        preset="tiny", device="cpu", dtype="fp32", batch=2, video=(17, 64, 64),
        tokens_per_sample=576, parameters=484_224, step_seconds=0.5, tokens_per_second=2304.0,
        peak_memory_gib=0.4, memory_kind="process peak RSS", tflops=0.01, mfu=0.4,
    )  # fmt: skip
    row = bench.table([result]).splitlines()[2]
    assert row.startswith("| tiny | cpu | fp32 | 2 x 17x64x64 | 576 | 0.5M | 0.500 | 2,304 |")
    assert row.endswith("| 0.01 | 40.0% |")


def test_rejects_bad_arguments(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--preset", "huge"]) == 2
    assert "unknown preset huge" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--steps", "0"])


def test_cuda_requested_without_device(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench.main(["--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_token_grid_refuses_a_video_instead_of_rounding_it(bench: ModuleType) -> None:
    from aiprod_core.errors import AiprodError
    from aiprod_core.models import get_preset

    with pytest.raises(AiprodError, match="width"):
        bench.token_grid(get_preset("tiny"), (17, 64, 63))
