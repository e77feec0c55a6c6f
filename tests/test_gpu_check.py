"""Tests of scripts/testing/gpu_check.py: the skip path and report without CUDA, the pure
helpers, and the checks themselves on CPU with the tiny preset; the whole run on CUDA."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
import yaml

from aiprod_core.models import get_preset
from aiprod_core.transformer import forward_flops

CREATED = datetime(2026, 5, 9, 7, 35, 25, tzinfo=UTC)
NAMES = ["gpu_smoke", "train_step_eager", "train_step_compiled", "fsdp_nccl", "generate_bf16"]


@pytest.fixture(scope="module")
def check(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("testing/gpu_check.py")


@pytest.fixture
def tiny(check: ModuleType) -> Any:
    """Workloads small enough for a CPU: the tiny preset, a 3x2x2 token grid."""
    return check.Sizes(
        preset="tiny",
        train_batch=2,
        train_video=(5, 16, 16),
        warmup_steps=1,
        timed_steps=2,
        compile_backend="eager",
        fsdp_steps=4,
        fsdp_video=(5, 16, 16),
        generation_steps=2,
    )


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


# ------------------------------------------------------------------- pure functions


def test_throughput_and_mfu(check: ModuleType) -> None:
    assert check.throughput(2 * 10**12, 0.5, 989.0) == {
        "tflops": pytest.approx(4.0),
        "mfu": pytest.approx(4.0 / 989.0),
    }
    assert check.throughput(3 * 10**15, 1.0, None) == {"tflops": pytest.approx(3000.0), "mfu": None}


def test_status_follows_the_checks(check: ModuleType) -> None:
    passed = check.record("a", "passed", {}, 1.0)
    failed = check.record("b", "failed", {"error": "x"}, 1.0)
    skip = check.skipped("c", "one GPU")
    assert skip == {
        "name": "c",
        "status": "skipped",
        "reason": "one GPU",
        "seconds": 0.0,
        "details": {},
    }
    assert check.aggregate_status([passed, skip], require_gpu=False) == "passed"
    assert check.aggregate_status([passed, skip], require_gpu=True) == "passed"
    assert check.aggregate_status([passed, failed, skip], require_gpu=False) == "failed"
    assert check.aggregate_status([skip, skip], require_gpu=False) == "skipped"
    assert check.aggregate_status([skip, skip], require_gpu=True) == "failed"
    assert [check.exit_code(s) for s in ("passed", "skipped", "failed")] == [0, 0, 1]


def test_run_check_records_errors(check: ModuleType) -> None:
    fine = check.run_check("fine", lambda: (True, {"tflops": 1.5}))
    assert (fine["status"], fine["reason"], fine["details"]) == ("passed", None, {"tflops": 1.5})

    def broken() -> tuple[bool, dict[str, Any]]:
        raise RuntimeError("CUDA out of memory\nTried to allocate 2 GiB")

    record = check.run_check("broken", broken)
    assert record["status"] == "failed"
    assert record["details"]["error"] == "RuntimeError: CUDA out of memory"
    assert "broken" in record["details"]["where"]
    assert check.run_check("quiet", lambda: (False, {}))["status"] == "failed"


def test_last_json_line(check: ModuleType) -> None:
    text = 'warning: something\n{"step": 2, "completed": false}\n'
    assert check.last_json_line(text) == {"step": 2, "completed": False}
    assert check.last_json_line('{"a": 1}\n[1, 2]\nnot json') == {"a": 1}
    assert check.last_json_line("nothing here") is None


def test_fsdp_commands_and_config(check: ModuleType, tiny: Any, tmp_path: Path) -> None:
    config = check.fsdp_config(tiny)
    assert config["distributed"] == {
        "strategy": "fsdp",
        "param_dtype": "bfloat16",
        "cpu_offload": False,
    }
    assert config["training"]["max_steps"] == 4
    assert config["checkpoints"]["every"] == 2
    assert config["model"] == {"preset": "tiny"}
    make, encode, first, resume = check.fsdp_commands("py", tmp_path, 4, tiny)
    scripts = Path(check.__file__).resolve().parents[1]
    assert make[:2] == ["py", str(scripts / "data" / "make_synthetic_dataset.py")]
    assert make[make.index("--count") + 1] == "8"  # two clips per GPU
    assert encode[encode.index("--manifest") + 1] == str(tmp_path / "clips" / "manifest.jsonl")
    assert encode[encode.index("--preset") + 1] == "tiny"
    assert first[:6] == [
        "py",
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "4",
    ]
    assert first[6:] == ["-m", "aiprod_trainer.cli", str(tmp_path / "train.yaml"), "--json",
                         "--stop-at-step", "2"]  # fmt: skip
    assert resume[-1] == "--resume"
    assert len(check.FSDP_STEPS) == 4


def test_report_shape_and_table(check: ModuleType, tmp_path: Path) -> None:
    checks = [
        check.record("train_step_eager", "passed", {"tflops": 412.5, "mfu": 0.417, "n": 3}, 12.0),
        check.skipped("fsdp_nccl", "FSDP over NCCL needs 2 or more GPUs; this host has 1"),
        check.record("generate_bf16", "failed", {"error": "ValueError: bad"}, 0.5),
    ]
    report = check.build_report(
        checks, skip_reason=None, require_gpu=False, host={"hostname": "box"}, created=CREATED
    )
    assert report["tool"] == "gpu_check"
    assert report["created"] == "2026-05-09T07:35:25+00:00"
    assert report["status"] == "failed"
    assert [c["name"] for c in report["checks"]] == [c["name"] for c in checks]
    lines = check.format_table(report).splitlines()
    assert lines[1].split() == ["train_step_eager", "PASSED", "12.0", "tflops=412.5", "mfu=0.417"]
    assert lines[2].endswith("FSDP over NCCL needs 2 or more GPUs; this host has 1")
    assert lines[3].split()[:3] == ["generate_bf16", "FAILED", "0.5"]
    assert lines[-1] == "status: failed"
    path = check.write_report(report, tmp_path / "reports", CREATED)
    assert path == tmp_path / "reports" / "gpu_check-20260509T073525Z.json"
    assert read_json(path) == read_json(tmp_path / "reports" / "latest.json") == report
    assert json.loads(check.report_json({"x": float("nan"), "y": (1,)})) == {"x": None, "y": [1]}


# ------------------------------------------------------------------- without CUDA


@pytest.mark.usefixtures("no_cuda")
def test_without_cuda_every_check_is_skipped(
    check: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check.main(["--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    reason = f"torch {torch.__version__} is a CPU-only build"
    assert out.splitlines()[0] == f"cannot run the checks: {reason}; skipping every check"
    assert out.splitlines()[-2] == "status: skipped"
    report = read_json(tmp_path / "latest.json")
    assert report["status"] == "skipped"
    assert report["skip_reason"] == reason
    assert [c["name"] for c in report["checks"]] == NAMES
    assert {c["status"] for c in report["checks"]} == {"skipped"}
    assert {c["reason"] for c in report["checks"]} == {reason}
    assert report["host"]["torch"] == torch.__version__
    assert report["host"]["gpus"] == []
    (stamped,) = [p for p in tmp_path.iterdir() if p.name.startswith("gpu_check-")]
    assert read_json(stamped) == report


@pytest.mark.usefixtures("no_cuda")
def test_require_gpu_fails_without_cuda(
    check: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check.main(["--require-gpu", "--json", "--output", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report == read_json(tmp_path / "latest.json")
    assert report["status"] == "failed"
    assert {c["status"] for c in report["checks"]} == {"skipped"}
    assert "failing (--require-gpu)" in captured.err


def test_reasons_name_every_missing_piece(
    check: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setitem(sys.modules, "aiprod_trainer.cli", None)
    reason = check.unavailable_reason()
    first, second = reason.split("; ", 1)
    assert first == "torch.cuda.is_available() is False (no driver or no visible device)"
    assert second.startswith("aiprod_trainer is not importable (")
    monkeypatch.setitem(sys.modules, "torch", None)
    assert check.unavailable_reason().startswith("torch is not installed (")
    assert check.host_info()["torch"] is None


def test_no_reason_on_a_cuda_host_with_the_packages(
    check: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert check.unavailable_reason() is None


def test_main_on_a_cuda_host_runs_the_checks(
    check: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    def fake(options: Any, output: Path) -> list[dict[str, Any]]:
        seen.update(options=options, output=output)
        return [check.record(name, "passed", {}, 1.0) for name in NAMES]

    monkeypatch.setattr(check, "unavailable_reason", lambda: None)
    monkeypatch.setattr(check, "run_all_checks", fake)
    monkeypatch.setattr(check, "host_info", lambda: {"gpus": ["NVIDIA H100 80GB HBM3"]})
    assert check.main(["--output", str(tmp_path), "--peak-tflops", "900"]) == 0
    assert seen["options"].peak_tflops == 900.0
    assert seen["options"].sizes == check.Sizes()
    assert seen["output"] == tmp_path
    assert read_json(tmp_path / "latest.json")["status"] == "passed"


def test_bad_arguments(check: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        check.main(["--peak-tflops", "-1"])
    assert info.value.code == 2
    assert "--peak-tflops must be positive, got -1.0" in capsys.readouterr().err


# ------------------------------------------------------- the checks on CPU, tiny sizes


def test_default_sizes_train_the_small_preset_on_a_9x16x16_grid(check: ModuleType) -> None:
    sizes = check.Sizes()
    assert (sizes.preset, sizes.train_batch, sizes.train_video) == ("small", 8, (33, 256, 256))


# torch.compile's tracer warns about internals (a non-leaf .grad) that pytest makes errors.
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("compiled", [False, True])
def test_train_step_on_cpu(check: ModuleType, tiny: Any, compiled: bool) -> None:
    passed, details = check.measure_train_step("cpu", tiny, compiled=compiled, peak_tflops=1e-6)
    assert passed is True
    tiny_config = get_preset("tiny")
    flops = 3 * forward_flops(
        tiny_config.transformer, 2, (3, 2, 2), tiny_config.text_encoder.max_length
    )
    assert details["step_tflop"] == pytest.approx(flops / 1e12)
    assert details["tflops"] == pytest.approx(flops / details["step_seconds"] / 1e12)
    assert details["mfu"] == pytest.approx(details["tflops"] / 1e-6)
    assert details["token_grid"] == [3, 2, 2]
    assert details["peak_memory_gib"] is None  # measured on CUDA only
    assert details["loss"] > 0
    assert ("compile_seconds" in details) is compiled


def test_generation_on_cpu(check: ModuleType, tiny: Any) -> None:
    passed, details = check.check_generation("cpu", tiny, "float32")
    assert passed is True
    assert details["video"] == [9, 32, 32]  # the tiny preset's defaults
    assert details["steps"] == 2
    assert details["transformer_dtype"] == details["weights_dtype"] == ["float32"]
    assert details["latents_finite"] is details["shape_ok"] is True


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_fsdp_skipped_on_one_gpu_and_run_checks(
    check: ModuleType, tiny: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(check, "check_smoke", lambda output, peak: (True, {"status": "passed"}))
    options = check.Options(peak_tflops=None, sizes=tiny)
    steps = check.plan_checks("cpu", 1, 1e-6, options, tmp_path, tmp_path)
    assert [name for name, _ in steps] == NAMES
    records = check.run_checks(steps)
    assert {r["name"]: r["status"] for r in records} == {
        "gpu_smoke": "passed",
        "train_step_eager": "passed",
        "train_step_compiled": "passed",
        "fsdp_nccl": "skipped",
        "generate_bf16": "passed",
    }
    fsdp = records[3]
    assert fsdp["reason"] == "FSDP over NCCL needs 2 or more GPUs; this host has 1"
    compiled = records[2]["details"]
    assert compiled["speedup"] == pytest.approx(
        records[1]["details"]["step_seconds"] / compiled["step_seconds"]
    )
    assert callable(check.plan_checks("cpu", 2, None, options, tmp_path, tmp_path)[3][1])


def fake_runs(outputs: list[tuple[int, str]]) -> tuple[list[list[str]], Callable[..., Any]]:
    calls: list[list[str]] = []

    def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        code, stdout = outputs[len(calls)]
        calls.append(command)
        return subprocess.CompletedProcess(command, code, stdout, "stderr text")

    return calls, run


def test_fsdp_check_stops_then_resumes(
    check: ModuleType, tiny: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stopped = {"step": 2, "completed": False, "last_loss": 1.1}
    resumed = {
        "step": 4,
        "completed": True,
        "last_loss": 0.9,
        "final_model": "run/model.safetensors",
    }
    calls, run = fake_runs(
        [(0, "{}"), (0, "{}"), (0, json.dumps(stopped)), (0, json.dumps(resumed))]
    )
    monkeypatch.setattr(check.subprocess, "run", run)
    passed, details = check.check_fsdp(2, tiny, tmp_path)
    assert passed is True
    assert details == {"gpus": 2, "stopped_at": 2, "resumed_to": 4, "loss": 0.9,
                       "final_model": "run/model.safetensors", "preset": "tiny"}  # fmt: skip
    assert calls == check.fsdp_commands(sys.executable, tmp_path, 2, tiny)
    written = yaml.safe_load((tmp_path / "train.yaml").read_text(encoding="utf-8"))
    assert written == check.fsdp_config(tiny)

    _, run = fake_runs([(0, "{}"), (0, "{}"), (0, json.dumps(stopped)), (0, json.dumps(stopped))])
    monkeypatch.setattr(check.subprocess, "run", run)
    assert check.check_fsdp(2, tiny, tmp_path)[0] is False  # the resume did not finish

    calls, run = fake_runs([(0, "{}"), (1, "")])
    monkeypatch.setattr(check.subprocess, "run", run)
    passed, details = check.check_fsdp(2, tiny, tmp_path)
    assert passed is False
    assert details["error"] == "compute_latents exited 1"
    assert details["stderr"] == "stderr text"
    assert len(calls) == 2


def test_smoke_check_reads_the_smoke_report(
    check: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    smoke = {"status": "passed", "checks": [
        {"name": "environment", "passed": True, "details": {}},
        {"name": "aiprod_model", "passed": True, "details": {"mfu": 0.41}},
    ]}  # fmt: skip
    calls, run = fake_runs([(0, json.dumps(smoke, indent=2))])
    monkeypatch.setattr(check.subprocess, "run", run)
    passed, details = check.check_smoke(tmp_path, 989.0)
    assert passed is True
    assert details["checks"] == {"environment": True, "aiprod_model": True}
    assert details["mfu"] == 0.41
    (command,) = calls
    assert command[1].endswith("scripts/testing/gpu_smoke.py")
    assert command[-2:] == ["--peak-tflops", "989.0"]
    assert command[command.index("--output") + 1] == str(tmp_path / "gpu_smoke")

    _, run = fake_runs([(1, "Traceback ...")])
    monkeypatch.setattr(check.subprocess, "run", run)
    passed, details = check.check_smoke(tmp_path, None)
    assert passed is False
    assert details["error"] == "gpu_smoke exited 1 without a report"


# ------------------------------------------------------------------------------ CUDA


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_whole_check_on_cuda(check: ModuleType, tmp_path: Path) -> None:
    assert check.main(["--require-gpu", "--output", str(tmp_path)]) == 0
    report = read_json(tmp_path / "latest.json")
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert list(statuses) == NAMES
    expected_fsdp = "passed" if torch.cuda.device_count() > 1 else "skipped"
    assert statuses == {**dict.fromkeys(NAMES, "passed"), "fsdp_nccl": expected_fsdp}
    details = {c["name"]: c["details"] for c in report["checks"]}
    assert details["train_step_eager"]["tflops"] > 0
    assert details["train_step_compiled"]["speedup"] > 0
    assert details["generate_bf16"]["transformer_dtype"] == ["bfloat16"]
    assert details["generate_bf16"]["peak_memory_gib"] > 0
