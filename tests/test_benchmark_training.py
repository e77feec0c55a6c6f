"""The training benchmark times the trainer's real steps in each mode and reports them."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import torch

from aiprod_core.models import build_model, get_preset

TINY_CPU = ["--preset", "tiny", "--device", "cpu", "--steps", "1", "--warmup", "0",
            "--batch", "1", "--json"]  # fmt: skip


@pytest.fixture
def bench(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("testing/benchmark_training.py")


@pytest.fixture(scope="module")
def tiny_parameters() -> dict[str, int]:
    model = build_model(get_preset("tiny"))
    return {
        "dit": sum(p.numel() for p in model.transformer.parameters()),
        "vae": sum(p.numel() for p in model.vae.parameters()),
    }


def fake_cuda(monkeypatch: pytest.MonkeyPatch, calls: list[str]) -> SimpleNamespace:
    """A CUDA device whose memory and synchronisation calls are recorded, not run."""
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda d: calls.append("reset"))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda d: 3 * 2**30)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda d: calls.append("sync"))
    return SimpleNamespace(type="cuda")


def result(bench: ModuleType, **changes: Any) -> Any:
    fields = {
        "mode": "dit", "preset": "tiny", "device": "cpu", "dtype": "fp32", "threads": 2, "batch": 4,
        "video": (17, 64, 64), "latent": (8, 9, 16, 16), "trainable_parameters": 484_224,
        "steps": 10, "step_seconds": 0.5, "samples_per_second": 8.0, "peak_memory_gib": 0.45,
        "memory_kind": "process peak RSS",
    }  # fmt: skip
    fields.update(changes)
    return bench.Result(**fields)


def test_workload_by_device(bench: ModuleType) -> None:
    assert bench.workload("tiny", "cpu", None) == ((17, 64, 64), 4)
    assert bench.workload("small", "cuda", None) == ((33, 256, 256), 8)
    assert bench.workload("small", "cpu", 3) == ((9, 128, 128), 3)


def test_latent_shape_follows_the_vae(bench: ModuleType) -> None:
    assert bench.latent_shape("tiny", (17, 64, 64)) == (8, 9, 16, 16)
    assert bench.latent_shape("small", (33, 256, 256)) == (32, 9, 32, 32)


def test_summarize_skips_warmup_and_takes_the_median(bench: ModuleType) -> None:
    # steps of 5, 2, 1 and 3 seconds; the first is warm-up
    step, per_second = bench.summarize([0.0, 5.0, 7.0, 8.0, 11.0], 1, 4)
    assert (step, per_second) == (2.0, 2.0)
    with pytest.raises(ValueError, match="no timed steps: 1 step"):
        bench.summarize([0.0, 1.0], 1, 4)


@pytest.fixture
def restore_threads() -> Iterator[int]:
    threads = torch.get_num_threads()
    yield threads
    torch.set_num_threads(threads)


@pytest.mark.parametrize(("mode", "threads"), [("dit", None), ("vae", None), ("lora", 1)])
def test_each_mode_trains_on_cpu(
    bench: ModuleType,
    mode: str,
    threads: int | None,
    tiny_parameters: dict[str, int],
    restore_threads: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    extra = [] if threads is None else ["--threads", str(threads)]
    assert bench.main(["--mode", mode, *extra, *TINY_CPU]) == 0
    captured = capsys.readouterr()
    (data,) = json.loads(captured.out)
    assert f"measuring {mode} of tiny on cpu" in captured.err
    assert set(data) == set(bench.Result.__dataclass_fields__)
    assert (data["mode"], data["preset"], data["device"], data["dtype"]) == (
        mode, "tiny", "cpu", "fp32",
    )  # fmt: skip
    assert (data["batch"], data["steps"]) == (1, 1)
    assert data["threads"] == (threads or restore_threads)
    assert data["video"] == [17, 64, 64]
    assert data["latent"] == [8, 9, 16, 16]
    assert data["step_seconds"] > 0
    assert data["samples_per_second"] == pytest.approx(1 / data["step_seconds"])
    assert 0.05 < data["peak_memory_gib"] < 64
    assert data["memory_kind"] == "process peak RSS"
    trainable = data["trainable_parameters"]
    if mode == "lora":
        assert 0 < trainable < tiny_parameters["dit"] / 5
    else:
        assert trainable == tiny_parameters[mode]


def test_timed_steps_follow_the_warmup(bench: ModuleType) -> None:
    clock = bench.StepClock(torch.device("cpu"), warmup=2)
    for _ in range(3):
        clock.before()
        clock.after()
    assert len(clock.marks) == 4
    assert clock.marks == sorted(clock.marks)
    assert clock.reset
    assert clock.peak > 0


def test_cpu_peak_without_reset(bench: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "CLEAR_REFS", Path("/nonexistent-folder/clear_refs"))
    clock = bench.StepClock(torch.device("cpu"), warmup=0)
    clock.before()
    clock.after()
    assert not clock.reset
    assert bench.memory_kind(torch.device("cpu"), clock.reset) == "process peak RSS since start"


def test_cuda_memory_window(bench: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    device = fake_cuda(monkeypatch, calls)
    clock = bench.StepClock(device, warmup=1)
    for _ in range(2):
        clock.before()
        clock.after()
    assert calls == ["sync", "reset", "sync"]
    assert clock.peak == 3.0
    assert bench.memory_kind(device, True) == "cuda allocated"


def test_device_choice(bench: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert bench.pick_device("auto") == torch.device("cuda", 0)
    assert bench.pick_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench.pick_device("auto") == torch.device("cpu")
    with pytest.raises(bench.BenchmarkError, match="no CUDA device"):
        bench.pick_device("cuda")


def record_runs(bench: ModuleType, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """Replace both ways of measuring by ones that record (how, mode, preset, device)."""
    runs: list[tuple[str, ...]] = []

    def fake(how: str) -> Callable[..., Any]:
        def run(mode: str, preset: str, args: Any, device: Any) -> Any:
            runs.append((how, mode, preset, device.type))
            return result(bench, mode=mode, preset=preset, device=str(device))

        return run

    monkeypatch.setattr(bench, "measure", fake("here"))
    monkeypatch.setattr(bench, "measure_in_child", fake("child"))
    return runs


def test_several_measurements_run_in_children(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = record_runs(bench, monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench.main([]) == 0
    assert runs == [("child", mode, "tiny", "cpu") for mode in ("dit", "vae", "lora")]
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 2 + 3
    assert [row.split(" | ")[0] for row in rows[2:]] == ["| dit", "| vae", "| lora"]


def test_in_process_and_default_cuda_preset(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = record_runs(bench, monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    args = ["--mode", "lora", "--mode", "dit", "--mode", "lora", "--in-process", "--json"]
    assert bench.main(args) == 0
    assert runs == [("here", "lora", "small", "cuda"), ("here", "dit", "small", "cuda")]
    assert [r["mode"] for r in json.loads(capsys.readouterr().out)] == ["lora", "dit"]


def test_child_process_measurement(bench: ModuleType) -> None:
    args = bench.parse_args(["--mode", "dit", "--threads", "1", *TINY_CPU])
    measured = bench.measure_in_child("dit", "tiny", args, torch.device("cpu"))
    assert isinstance(measured, bench.Result)
    assert (measured.mode, measured.batch, measured.steps) == ("dit", 1, 1)
    assert measured.threads == 1
    assert measured.video == (17, 64, 64)
    assert measured.latent == (8, 9, 16, 16)
    assert measured.samples_per_second == pytest.approx(1 / measured.step_seconds)


def test_failed_child_is_reported(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    commands: list[list[str]] = []

    def failing(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        commands.append(command)
        return subprocess.CompletedProcess(command, 3, stdout="")

    monkeypatch.setattr(subprocess, "run", failing)
    code = bench.main(["--mode", "dit", "--mode", "vae", "--device", "cpu", "--steps", "2"])
    assert code == 1
    assert "measuring dit of tiny failed in its child process (exit code 3)" in (
        capsys.readouterr().err
    )
    (command,) = commands
    assert command[1].endswith("benchmark_training.py")
    assert command[2:] == ["--mode", "dit", "--preset", "tiny", "--device", "cpu",
                          "--steps", "2", "--warmup", "2", "--json"]  # fmt: skip


def test_markdown_table(bench: ModuleType) -> None:
    row = bench.table([result(bench, trainable_parameters=35_000)]).splitlines()[2]
    assert row == (
        "| dit | tiny | cpu | fp32 | 2 | 4 x 17x64x64 | 8x9x16x16 | 0.035M | 10 | 0.500 | 8.00 "
        "| 0.45 (process peak RSS) |"
    )


def test_rejects_unknown_presets(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--preset", "huge", "--device", "cpu"]) == 2
    assert "--preset: unknown preset huge; expected one of: tiny, small" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (["--steps", "0"], "must be >= 1"),
        (["--warmup", "-1"], "--warmup >= 0"),
        (["--batch", "0"], "must be >= 1"),
        (["--threads", "0"], "must be >= 1"),
        (["--mode", "gan"], "invalid choice: 'gan'"),
    ],
)
def test_rejects_bad_numbers_and_modes(
    bench: ModuleType, bad: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        bench.main(bad)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_cuda_requested_without_device(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench.main(["--device", "cuda"]) == 2
    assert "--device cuda: no CUDA device" in capsys.readouterr().err
