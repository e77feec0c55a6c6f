"""Tests of scripts/testing/gpu_smoke.py: host-independent logic and the checks on CPU (the
model check with the tiny preset), the whole suite on CUDA."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from aiprod_core.models import count_parameters, get_preset
from aiprod_core.transformer import VideoTransformer, forward_flops

CREATED = datetime(2026, 5, 9, 7, 35, 25, tzinfo=UTC)
TINY_VIDEO = (5, 16, 16)  # tiny preset: latent (3, 4, 4), token grid (3, 2, 2)


@pytest.fixture(scope="module")
def smoke(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("testing/gpu_smoke.py")


@pytest.fixture
def tiny_sizes(smoke: ModuleType) -> Any:
    return smoke.Sizes(
        matmul_check=32,
        matmul_throughput=64,
        timing_repeats=2,
        sdpa_shape=(1, 2, 32, 16),
        model_preset="tiny",
        model_batch=2,
        model_video=TINY_VIDEO,
    )


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


# ------------------------------------------------------------------- pure functions


def test_matmul_flop_formula(smoke: ModuleType) -> None:
    assert smoke.matmul_tflops(1000, 1e-3) == pytest.approx(2.0)
    assert smoke.matmul_tflops(8192, 1.0) == pytest.approx(2 * 8192**3 / 1e12)


def test_throughput_against_known_peak(smoke: ModuleType) -> None:
    passed, details = smoke.evaluate_throughput(600.0, 989.0, 0.3)
    assert passed is True
    assert details["fraction"] == pytest.approx(600 / 989)
    assert details["min_fraction"] == 0.3

    passed, details = smoke.evaluate_throughput(200.0, 989.0, 0.3)
    assert passed is False
    assert details["fraction"] == pytest.approx(0.2022, abs=1e-4)

    passed, _ = smoke.evaluate_throughput(300.0, 1000.0, 0.3)
    assert passed is True  # the threshold itself passes


def test_throughput_with_unknown_peak_is_not_a_failure(smoke: ModuleType) -> None:
    passed, details = smoke.evaluate_throughput(42.0, None, 0.3)
    assert passed is True
    assert details["fraction"] is None
    assert details["peak_tflops"] is None
    assert "--peak-tflops" in details["note"]


def test_status_and_exit_code(smoke: ModuleType) -> None:
    ok = smoke.make_record("a", True, {}, 0.1)
    bad = smoke.make_record("b", False, {"error": "x"}, 0.2)
    assert smoke.aggregate_status([], "no device") == "skipped"
    assert smoke.aggregate_status([ok], None) == "passed"
    assert smoke.aggregate_status([ok, bad], None) == "failed"
    assert smoke.aggregate_status([bad], "no device") == "failed"
    assert smoke.exit_code("passed") == 0
    assert smoke.exit_code("skipped") == 0
    assert smoke.exit_code("failed") == 1


def test_run_check_records_results_and_exceptions(smoke: ModuleType) -> None:
    record = smoke.run_check("fine", lambda: (True, {"value": 3}))
    assert record["name"] == "fine"
    assert record["passed"] is True
    assert record["details"] == {"value": 3}
    assert record["seconds"] >= 0

    def broken() -> tuple[bool, dict[str, Any]]:
        raise ValueError("bad input\nmore text")

    record = smoke.run_check("broken", broken)
    assert record["passed"] is False
    assert record["details"]["error"] == "ValueError: bad input"
    assert "broken" in record["details"]["where"]


def test_describe_error_without_message(smoke: ModuleType) -> None:
    assert smoke.describe_error(RuntimeError()) == "RuntimeError"


def test_json_ready_makes_strict_json(smoke: ModuleType) -> None:
    value = {"a": float("nan"), "b": (1, float("inf")), 3: {"c": [2.5, -float("inf")]}}
    assert smoke.json_ready(value) == {"a": None, "b": [1, None], "3": {"c": [2.5, None]}}
    assert json.loads(smoke.report_json({"x": float("nan")})) == {"x": None}


def test_build_report_shape(smoke: ModuleType) -> None:
    check = smoke.make_record("matmul_float32", True, {"n": 4}, 0.5)
    report = smoke.build_report(
        [check], skip_reason=None, host={"hostname": "box"}, created=CREATED
    )
    assert report == {
        "tool": "gpu_smoke",
        "created": "2026-05-09T07:35:25+00:00",
        "status": "passed",
        "skip_reason": None,
        "host": {"hostname": "box"},
        "checks": [{"name": "matmul_float32", "passed": True, "details": {"n": 4}, "seconds": 0.5}],
    }


def test_write_report_writes_stamped_and_latest(smoke: ModuleType, tmp_path: Path) -> None:
    report = smoke.build_report([], skip_reason="none here", host={}, created=CREATED)
    out = tmp_path / "deep" / "reports"
    path = smoke.write_report(report, out, CREATED)
    assert path == out / "gpu_smoke-20260509T073525Z.json"
    assert read_json(path) == read_json(out / "latest.json")
    assert read_json(path)["status"] == "skipped"
    assert sorted(p.name for p in out.iterdir()) == [
        "gpu_smoke-20260509T073525Z.json",
        "latest.json",
    ]


def test_write_atomic_leaves_old_file_on_failure(
    smoke: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "latest.json"
    target.write_text("old", encoding="utf-8")

    def refuse(self: Path, other: Path) -> Path:
        raise OSError("disk full")

    monkeypatch.setattr(Path, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        smoke.write_atomic(target, "new")
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["latest.json"]


def test_summarize_formats_and_cuts(smoke: ModuleType) -> None:
    details = {"tflops": 612.34567, "n": 8192, "where": "trace", "shape": [1, 2], "sub": {"a": 1}}
    assert smoke.summarize(details) == "tflops=612.3 n=8192"
    long = smoke.summarize({"text": "x" * 200}, width=20)
    assert long == "text=" + "x" * 12 + "..."
    assert len(long) == 20


def test_format_table_lists_checks_and_status(smoke: ModuleType) -> None:
    checks = [
        smoke.make_record("matmul_bfloat16", True, {"max_abs_error": 0.001}, 0.25),
        smoke.make_record("torch_compile", False, {"error": "no compiler"}, 1.5),
    ]
    report = smoke.build_report(checks, skip_reason=None, host={}, created=CREATED)
    lines = smoke.format_table(report).splitlines()
    assert lines[0].split() == ["check", "result", "seconds", "details"]
    assert lines[1].split() == ["matmul_bfloat16", "PASS", "0.25", "max_abs_error=0.001"]
    assert lines[2].split()[:3] == ["torch_compile", "FAIL", "1.50"]
    assert lines[2].endswith("error=no compiler")
    assert lines[3] == "status: failed (2 checks, 1 failed)"


# ----------------------------------------------------------------- skip decision


@pytest.fixture
def no_aiprod_core(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiprod_core cannot be imported, as on a host whose python lacks it."""
    monkeypatch.setitem(sys.modules, "aiprod_core", None)
    monkeypatch.setitem(sys.modules, "aiprod_core.transformer", None)


def test_reason_with_cpu_only_torch(smoke: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    assert smoke.unavailable_reason() == f"torch {torch.__version__} is a CPU-only build"


def test_reason_with_cuda_build_but_no_device(
    smoke: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    reason = smoke.unavailable_reason()
    assert reason == "torch.cuda.is_available() is False (no driver or no visible device)"


def test_no_reason_when_cuda_and_aiprod_core_are_available(
    smoke: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert smoke.unavailable_reason() is None


@pytest.mark.usefixtures("no_aiprod_core")
def test_reason_without_aiprod_core_on_a_cuda_host(
    smoke: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    reason = smoke.unavailable_reason()
    assert reason.startswith("aiprod_core is not importable (")
    assert "aiprod_core.transformer" in reason


@pytest.mark.usefixtures("no_aiprod_core")
def test_reason_names_every_missing_prerequisite(
    smoke: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    first, second = smoke.unavailable_reason().split("; ", 1)
    assert first == f"torch {torch.__version__} is a CPU-only build"
    assert second.startswith("aiprod_core is not importable (")


def test_reason_without_torch(smoke: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    reason = smoke.unavailable_reason()
    assert reason.startswith("torch is not installed (")
    assert "aiprod_core" not in reason
    assert smoke.host_info()["torch"] is None


def test_host_info_with_torch(smoke: ModuleType) -> None:
    info = smoke.host_info()
    assert info["torch"] == torch.__version__
    assert info["python"] == "{}.{}.{}".format(*sys.version_info[:3])
    assert set(info) == {"hostname", "platform", "python", "torch"}


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)


@pytest.mark.usefixtures("no_cuda")
def test_main_skips_without_cuda(
    smoke: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert smoke.main(["--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"cannot run the checks: torch {torch.__version__} is a CPU-only build; skipping" in out
    assert out.splitlines()[1] == "status: skipped (0 checks, 0 failed)"
    assert "result" not in out  # no table header without checks
    report = read_json(tmp_path / "latest.json")
    assert report["status"] == "skipped"
    assert report["checks"] == []
    assert report["skip_reason"] == f"torch {torch.__version__} is a CPU-only build"
    assert report["host"]["torch"] == torch.__version__
    stamped = [p for p in tmp_path.iterdir() if p.name.startswith("gpu_smoke-")]
    assert len(stamped) == 1
    assert read_json(stamped[0]) == report


def test_main_skips_without_torch(
    smoke: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    assert smoke.main(["--output", str(tmp_path)]) == 0
    assert "cannot run the checks: torch is not installed (" in capsys.readouterr().out
    report = read_json(tmp_path / "latest.json")
    assert report["status"] == "skipped"
    assert report["host"]["torch"] is None


def test_main_default_output_is_relative_to_cwd(
    smoke: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.chdir(tmp_path)
    assert smoke.main([]) == 0
    assert read_json(tmp_path / "outputs" / "gpu_smoke" / "latest.json")["status"] == "skipped"


@pytest.mark.usefixtures("no_cuda")
def test_main_require_gpu_fails_without_cuda(
    smoke: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert smoke.main(["--require-gpu", "--output", str(tmp_path)]) == 1
    assert "cannot run the checks:" in capsys.readouterr().out
    report = read_json(tmp_path / "latest.json")
    assert report["status"] == "failed"
    assert [c["name"] for c in report["checks"]] == ["prerequisites"]
    assert report["checks"][0]["passed"] is False
    assert "CPU-only build" in report["checks"][0]["details"]["error"]


@pytest.mark.usefixtures("no_cuda", "no_aiprod_core")
def test_main_skips_without_aiprod_core(
    smoke: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert smoke.main(["--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "aiprod_core is not importable (" in out
    assert out.splitlines()[0].endswith("; skipping")
    report = read_json(tmp_path / "latest.json")
    assert report["status"] == "skipped"
    assert report["checks"] == []
    assert "aiprod_core is not importable" in report["skip_reason"]


@pytest.mark.usefixtures("no_aiprod_core")
def test_main_require_gpu_fails_without_aiprod_core_on_a_cuda_host(
    smoke: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(smoke, "run_all_checks", lambda *args: pytest.fail("must not run"))
    assert smoke.main(["--require-gpu", "--output", str(tmp_path)]) == 1
    report = read_json(tmp_path / "latest.json")
    assert report["status"] == "failed"
    assert report["checks"][0]["details"]["error"].startswith("aiprod_core is not importable")


@pytest.mark.usefixtures("no_cuda")
def test_main_json_prints_only_json_on_stdout(
    smoke: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert smoke.main(["--json", "--output", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == read_json(tmp_path / "latest.json")
    assert "skipping" in captured.err
    assert "report: " in captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--peak-tflops", "0"], "--peak-tflops must be positive"),
        (["--min-matmul-fraction", "1.5"], "--min-matmul-fraction must be in [0, 1]"),
    ],
)
def test_main_rejects_bad_arguments(
    smoke: ModuleType, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc_info:
        smoke.main(argv)
    assert exc_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.usefixtures("no_cuda")
def test_main_reports_unwritable_output(
    smoke: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder", encoding="utf-8")
    assert smoke.main(["--output", str(blocker / "sub")]) == 1
    assert f"error: cannot write the report into {blocker / 'sub'}" in capsys.readouterr().err


@pytest.mark.parametrize(("passed", "code", "status"), [(True, 0, "passed"), (False, 1, "failed")])
def test_main_on_a_cuda_host_runs_the_suite(
    smoke: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    passed: bool,
    code: int,
    status: str,
) -> None:
    seen: dict[str, Any] = {}

    def fake_suite(device: str, options: Any) -> list[dict[str, Any]]:
        seen.update(device=device, options=options)
        return [smoke.make_record("matmul_bf16_throughput", passed, {"fraction": 0.5}, 1.0)]

    monkeypatch.setattr(smoke, "unavailable_reason", lambda: None)
    monkeypatch.setattr(smoke, "run_all_checks", fake_suite)
    argv = ["--output", str(tmp_path), "--peak-tflops", "500", "--min-matmul-fraction", "0.6"]
    assert smoke.main(argv) == code
    assert seen["device"] == "cuda"
    assert seen["options"].peak_tflops == 500.0
    assert seen["options"].min_matmul_fraction == 0.6
    assert seen["options"].sizes == smoke.Sizes()
    assert read_json(tmp_path / "latest.json")["status"] == status
    assert "matmul_bf16_throughput" in capsys.readouterr().out


# ------------------------------------------------ device checks, run on CPU, small sizes


def test_compare_tensors(smoke: ModuleType) -> None:
    expected = torch.tensor([1.0, -2.0, 0.0])
    passed, details = smoke.compare_tensors(expected.clone(), expected, 1e-3, 1e-3)
    assert passed is True
    assert details["max_abs_error"] == 0.0
    assert details["worst_tolerance_ratio"] == 0.0

    # allowed error at -2.0 is 1e-3 + 1e-3 * 2 = 3e-3
    passed, details = smoke.compare_tensors(torch.tensor([1.0, -2.0025, 0.0]), expected, 1e-3, 1e-3)
    assert passed is True
    assert details["worst_tolerance_ratio"] == pytest.approx(0.0025 / 0.003, rel=1e-4)

    passed, details = smoke.compare_tensors(torch.tensor([1.0, -2.0, 0.01]), expected, 1e-3, 1e-3)
    assert passed is False
    assert details["max_abs_error"] == pytest.approx(0.01)
    assert details["worst_tolerance_ratio"] == pytest.approx(10.0)


def test_compare_tensors_rejects_nan_and_shape(smoke: ModuleType) -> None:
    passed, details = smoke.compare_tensors(
        torch.tensor([float("nan"), 1.0]), torch.tensor([0.0, 1.0]), 1.0, 1.0
    )
    assert passed is False
    assert details["finite"] is False
    passed, details = smoke.compare_tensors(torch.zeros(2, 3), torch.zeros(3, 2), 1.0, 1.0)
    assert passed is False
    assert details == {"error": "shape (2, 3) != expected (3, 2)"}


def test_time_runs_counts_warmup_and_repeats(smoke: ModuleType) -> None:
    calls: list[int] = []
    times = smoke.time_runs(lambda: calls.append(1), "cpu", repeats=3, warmup=2)
    assert len(calls) == 5
    assert len(times) == 3
    assert all(t >= 0 for t in times)


def test_environment_on_cpu(smoke: ModuleType) -> None:
    passed, details = smoke.check_environment("cpu")
    assert passed is True
    assert details["torch"] == torch.__version__
    assert details["device"] == "cpu"
    assert details["cuda"] == torch.version.cuda


@pytest.mark.parametrize(("version", "text"), [((2, 21, 5), "2.21.5"), (2215, "2215")])
def test_nccl_version_formats(
    smoke: ModuleType, monkeypatch: pytest.MonkeyPatch, version: Any, text: str
) -> None:
    monkeypatch.setattr(torch.cuda.nccl, "version", lambda: version)
    assert smoke._nccl_version() == text


def test_nccl_version_absent(smoke: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> None:
        raise AttributeError("no nccl in this build")

    monkeypatch.setattr(torch.cuda.nccl, "version", missing)
    assert smoke._nccl_version() is None


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_matmul_check_passes_on_cpu(smoke: ModuleType, dtype: str) -> None:
    passed, details = smoke.check_matmul("cpu", dtype, 32)
    assert passed is True
    assert details["n"] == 32
    assert details["worst_tolerance_ratio"] < 1
    assert (details["rtol"], details["atol"]) == smoke.MATMUL_TOLERANCES[dtype]


def test_matmul_check_fails_with_impossible_tolerance(
    smoke: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(smoke.MATMUL_TOLERANCES, "bfloat16", (0.0, 1e-12))
    passed, details = smoke.check_matmul("cpu", "bfloat16", 32)
    assert passed is False
    assert details["max_abs_error"] > 1e-12
    assert torch.get_float32_matmul_precision() == "highest"  # restored


def test_matmul_throughput_check(smoke: ModuleType, tiny_sizes: Any) -> None:
    options = smoke.SmokeOptions(peak_tflops=1e-9, min_matmul_fraction=0.3, sizes=tiny_sizes)
    passed, details = smoke.check_matmul_throughput("cpu", options, "cpu")
    assert passed is True
    assert details["n"] == 64
    assert details["tflops"] == pytest.approx(smoke.matmul_tflops(64, details["median_seconds"]))
    assert details["fraction"] == pytest.approx(details["tflops"] / 1e-9)

    options = smoke.SmokeOptions(peak_tflops=1e6, min_matmul_fraction=0.3, sizes=tiny_sizes)
    passed, details = smoke.check_matmul_throughput("cpu", options, "cpu")
    assert passed is False
    assert details["fraction"] < 0.3

    options = smoke.SmokeOptions(sizes=tiny_sizes)
    passed, details = smoke.check_matmul_throughput("cpu", options, "Mystery GPU")
    assert passed is True
    assert details["fraction"] is None

    # without an override the peak comes from aiprod_core's table, by device name
    passed, details = smoke.check_matmul_throughput("cpu", options, "NVIDIA H100 NVL")
    assert details["peak_tflops"] == 835.0
    assert passed is False


def test_sdpa_check_on_cpu(smoke: ModuleType) -> None:
    passed, details = smoke.check_sdpa("cpu", (1, 2, 32, 16))
    backends = details["backends"]
    assert set(backends) == {"FLASH_ATTENTION", "EFFICIENT_ATTENTION"}
    ran = [name for name, result in backends.items() if result["ran"]]
    assert details["fused_backends_run"] == len(ran)
    assert passed is (len(ran) > 0)
    for name in ran:
        assert backends[name]["matches"] is True
    for name in set(backends) - set(ran):
        assert backends[name]["error"].startswith("RuntimeError")


def test_sdpa_check_fails_when_outputs_differ(
    smoke: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(smoke, "SDPA_TOLERANCE", (0.0, 1e-12))
    passed, details = smoke.check_sdpa("cpu", (1, 2, 32, 16))
    assert passed is False
    assert all(not r.get("matches", False) for r in details["backends"].values())


def test_compile_check_matches_eager(smoke: ModuleType) -> None:
    passed, details = smoke.check_compile("cpu", dim=16, backend="eager")
    assert passed is True
    assert details["backend"] == "eager"
    assert details["max_abs_error"] == 0.0


def test_compile_check_reports_toolchain_failure(
    smoke: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_toolchain(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")

    monkeypatch.setattr(torch, "compile", no_toolchain)
    passed, details = smoke.check_compile("cpu", dim=16)
    assert passed is False
    assert details == {
        "error": "torch.compile failed: RuntimeError: InvalidCxxCompiler: No working C++ compiler found"
    }


def test_default_sizes_run_the_small_preset_on_a_9x16x16_grid(smoke: ModuleType) -> None:
    sizes = smoke.Sizes()
    assert (sizes.model_preset, sizes.model_batch, sizes.model_video) == (
        "small",
        8,
        (33, 256, 256),
    )
    latent, grid = smoke.latent_grid(get_preset("small"), sizes.model_video)
    assert latent == (9, 32, 32)
    assert grid == (9, 16, 16)


def test_latent_grid_of_the_tiny_preset(smoke: ModuleType) -> None:
    assert smoke.latent_grid(get_preset("tiny"), TINY_VIDEO) == ((3, 4, 4), (3, 2, 2))
    assert smoke.latent_grid(get_preset("tiny"), (1, 8, 24)) == ((1, 2, 6), (1, 1, 3))


@pytest.mark.parametrize(
    ("video", "message"),
    [
        ((4, 16, 16), "frames=4 does not fit temporal_compression=2"),
        ((5, 18, 16), "height=18 is not a positive multiple of spatial_compression=4"),
        ((5, 16, 12), "latent width 3 is not a multiple of the patch width 2"),
    ],
)
def test_latent_grid_rejects_videos_the_model_cannot_take(
    smoke: ModuleType, video: tuple[int, int, int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        smoke.latent_grid(get_preset("tiny"), video)


def test_aiprod_model_check_on_cpu(smoke: ModuleType) -> None:
    passed, details = smoke.check_aiprod_model("cpu", "tiny", 2, TINY_VIDEO, repeats=2)
    assert passed is True
    assert details["preset"] == "tiny"
    assert details["latent_shape"] == [2, 8, 3, 4, 4]
    assert details["output_shape"] == details["latent_shape"]
    assert details["token_grid"] == [3, 2, 2]
    assert details["tokens"] == 24
    assert details["output_finite"] is details["shape_ok"] is details["grads_finite"] is True
    assert details["parameters"] == count_parameters(
        VideoTransformer(get_preset("tiny").transformer)
    )
    assert details["loss"] > 0
    tiny = get_preset("tiny")
    flops = 3 * forward_flops(tiny.transformer, 2, (3, 2, 2), tiny.text_encoder.max_length)
    assert flops > 0
    assert details["tflops"] == pytest.approx(flops / details["step_seconds"] / 1e12)
    assert details["peak_tflops"] is None
    assert details["mfu"] is None
    assert details["peak_memory_gib"] is None  # only measured on CUDA


def test_aiprod_model_check_reports_mfu_against_the_peak(smoke: ModuleType) -> None:
    passed, details = smoke.check_aiprod_model("cpu", "tiny", 1, (1, 8, 8), peak_tflops=1e-6)
    assert passed is True
    assert details["tokens"] == 1  # latent (1, 2, 2), one (1, 2, 2) patch
    assert details["peak_tflops"] == 1e-6
    assert details["mfu"] == pytest.approx(details["tflops"] / 1e-6)


def test_aiprod_model_check_fails_on_non_finite_output(
    smoke: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Diverging(VideoTransformer):
        def forward(self, *args: Any) -> torch.Tensor:
            return super().forward(*args) * float("nan")

    monkeypatch.setattr("aiprod_core.transformer.VideoTransformer", Diverging)
    passed, details = smoke.check_aiprod_model("cpu", "tiny", 1, (1, 8, 8), repeats=1)
    assert passed is False
    assert details["output_finite"] is False
    assert details["grads_finite"] is False
    assert details["shape_ok"] is True


def test_aiprod_model_check_rejects_a_bad_video(smoke: ModuleType) -> None:
    record = smoke.run_check(
        "aiprod_model", lambda: smoke.check_aiprod_model("cpu", "tiny", 1, (2, 8, 8))
    )
    assert record["passed"] is False
    assert record["details"]["error"].startswith("VideoShapeError: video shape 2x8x8: frames=2")


def test_run_all_checks_on_cpu(
    smoke: ModuleType, tiny_sizes: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    compile_check = smoke.check_compile
    monkeypatch.setattr(smoke, "check_compile", lambda device: compile_check(device, 16, "eager"))
    records = smoke.run_all_checks("cpu", smoke.SmokeOptions(peak_tflops=1e-9, sizes=tiny_sizes))
    assert [r["name"] for r in records] == [
        "environment",
        "matmul_float32",
        "matmul_bfloat16",
        "matmul_float16",
        "matmul_bf16_throughput",
        "sdpa_fused",
        "torch_compile",
        "aiprod_model",
    ]
    assert {r["name"]: r["details"].get("n") for r in records[1:5]} == {
        "matmul_float32": 32,
        "matmul_bfloat16": 32,
        "matmul_float16": 32,
        "matmul_bf16_throughput": 64,
    }
    model = records[-1]["details"]
    assert (model["preset"], model["batch"], model["token_grid"]) == ("tiny", 2, [3, 2, 2])
    assert model["mfu"] == pytest.approx(model["tflops"] / 1e-9)
    failed = [r["name"] for r in records if not r["passed"]]
    # CPU builds without a fused attention kernel legitimately fail only the sdpa check.
    assert set(failed) <= {"sdpa_fused"}


# ------------------------------------------------------------------------------ CUDA


@pytest.mark.gpu
@pytest.mark.slow
def test_full_suite_on_cuda(
    smoke: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert smoke.main(["--require-gpu", "--output", str(tmp_path)]) == 0, capsys.readouterr().out
    report = read_json(tmp_path / "latest.json")
    assert report["status"] == "passed"
    names = [check["name"] for check in report["checks"]]
    assert len(names) == 8
    assert names[0] == "environment"
    assert names[-1] == "aiprod_model"
    assert report["checks"][0]["details"]["cuda"] is not None
    model = report["checks"][-1]["details"]
    assert (model["preset"], model["batch"], model["token_grid"]) == ("small", 8, [9, 16, 16])
    assert model["tokens"] == 8 * 9 * 16 * 16
    assert model["grads_finite"] is True
    assert model["tflops"] > 0
    assert model["peak_memory_gib"] > 0
