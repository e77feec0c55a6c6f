"""Tests of scripts/dev/doctor.py: every check with good and bad inputs, verdict, CLI."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

GIB = 2**30


@pytest.fixture(scope="module")
def doctor(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("dev/doctor.py")


@pytest.fixture(autouse=True)
def clean_aiprod_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AIPROD_* variable of the calling shell may change what the tests load."""
    for variable in list(os.environ):
        if variable.startswith("AIPROD_"):
            monkeypatch.delenv(variable)


def fake_torch(cuda: str | None, devices: int) -> SimpleNamespace:
    return SimpleNamespace(
        __version__="2.5.1",
        version=SimpleNamespace(cuda=cuda),
        cuda=SimpleNamespace(
            is_available=lambda: devices > 0,
            device_count=lambda: devices,
            get_device_name=lambda index: "NVIDIA H200",
        ),
    )


def importer(module: Any) -> Callable[[str], Any]:
    def import_module(name: str) -> Any:
        assert name == "torch"
        return module

    return import_module


def missing_module(name: str) -> Any:
    raise ModuleNotFoundError(f"No module named {name!r}")


def completed(stdout: str = "", stderr: str = "", code: int = 0) -> Callable[..., Any]:
    calls: list[tuple[list[str], dict[str, Any]]] = []

    def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append((args, kwargs))
        return subprocess.CompletedProcess(args, code, stdout=stdout, stderr=stderr)

    run.calls = calls  # type: ignore[attr-defined]
    return run


def usage(free_gib: float) -> Callable[[Path], Any]:
    return lambda path: SimpleNamespace(total=100 * GIB, used=0, free=int(free_gib * GIB))


MODELS = {
    "aiprod-tiny": {
        "file": "aiprod-tiny.safetensors",
        "location": "checkpoints",
        "preset": "tiny",
        "obtain": "train it with `nox -s demo`",
    },
    "aiprod-19b": {"file": "aiprod-19b.safetensors", "location": "pretrained", "preset": "big"},
}


def write_config(folder: Path, models: dict[str, Any] | None = None) -> Path:
    """A small valid config folder (AIPROD.json + env/development.yaml) under ``folder``."""
    config_dir = folder / "config"
    (config_dir / "env").mkdir(parents=True)
    base = {
        "project": {"name": "aiprod", "version": "0.1.0"},
        "paths": {
            "models_cache": "models/cache",
            "checkpoints": "models/checkpoints",
            "pretrained": "models/pretrained",
            "outputs": "outputs",
        },
        "models": MODELS if models is None else models,
        "serving": {"default_model": "aiprod-tiny"},
    }
    (config_dir / "AIPROD.json").write_text(json.dumps(base), encoding="utf-8")
    (config_dir / "env" / "development.yaml").write_text("logging:\n  level: INFO\n", "utf-8")
    return config_dir


@pytest.fixture
def good_probes(doctor: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AIPROD_CONFIG_DIR", str(write_config(tmp_path)))
    return doctor.Probes(
        version_info=(3, 11, 9),
        import_module=importer(fake_torch("12.4", 1)),
        which=lambda name: f"/usr/bin/{name}",
        run=completed(stdout="tool 1.2.3\n"),
        disk_usage=usage(50),
        repo=tmp_path,
    )


# ------------------------------------------------------------------------- python


@pytest.mark.parametrize(
    ("version", "status", "message"),
    [
        ((3, 11, 7), "ok", "Python 3.11.7"),
        ((3, 13, 0), "ok", "Python 3.13.0"),
        ((3, 10, 14), "fail", "Python 3.10.14 is too old; AIPROD needs >= 3.11"),
    ],
)
def test_python_version(
    doctor: ModuleType, version: tuple[int, ...], status: str, message: str
) -> None:
    assert doctor.check_python(version) == doctor.CheckResult("python", status, message)


# -------------------------------------------------------------------------- torch


def test_torch_with_cuda(doctor: ModuleType) -> None:
    results = doctor.check_torch(importer(fake_torch("12.4", 2)))
    assert results == [
        doctor.CheckResult("torch", "ok", "torch 2.5.1"),
        doctor.CheckResult("cuda", "ok", "CUDA 12.4, 2 device(s), first: NVIDIA H200"),
    ]


def test_torch_cpu_build_is_a_note(doctor: ModuleType) -> None:
    torch_result, cuda_result = doctor.check_torch(importer(fake_torch(None, 0)))
    assert torch_result.status == "ok"
    assert cuda_result.status == "note"
    assert cuda_result.message.startswith("no CUDA device (torch is a CPU-only build)")


def test_torch_cuda_build_without_device_is_a_note(doctor: ModuleType) -> None:
    _, cuda_result = doctor.check_torch(importer(fake_torch("12.1", 0)))
    assert cuda_result.status == "note"
    assert cuda_result.message.startswith("no CUDA device (torch is CUDA 12.1)")


def test_torch_missing_fails(doctor: ModuleType) -> None:
    (result,) = doctor.check_torch(missing_module)
    assert result.name == "torch"
    assert result.status == "fail"
    assert result.message.startswith("torch is not installed (No module named 'torch')")
    assert "uv run scripts/dev/doctor.py" in result.message


def test_torch_of_this_environment(doctor: ModuleType) -> None:
    import torch

    results = doctor.check_torch(doctor.importlib.import_module)
    assert results[0] == doctor.CheckResult("torch", "ok", f"torch {torch.__version__}")
    assert results[1].status == ("ok" if torch.cuda.is_available() else "note")


# -------------------------------------------------------------------------- tools


def test_tool_missing_fails_with_install_hint(doctor: ModuleType) -> None:
    result = doctor.check_tool("nox", lambda name: None, completed())
    assert result == doctor.CheckResult(
        "nox",
        "fail",
        'nox not found on PATH; install: python3 -m pip install --user uv && python3 -m uv tool install "nox[uv]>=2026.8.10"',
    )


def test_tool_version_from_stdout(doctor: ModuleType) -> None:
    run = completed(stdout="uv 0.5.11 (c4d0caaee 2024-12-19)\n")
    result = doctor.check_tool("uv", lambda name: "/usr/local/bin/uv", run, timeout=3)
    assert result == doctor.CheckResult("uv", "ok", "uv 0.5.11 (/usr/local/bin/uv)")
    args, kwargs = run.calls[0]
    assert args == ["/usr/local/bin/uv", "--version"]
    assert kwargs["timeout"] == 3
    assert kwargs["capture_output"] is True


def test_tool_version_from_stderr(doctor: ModuleType) -> None:
    result = doctor.check_tool("nox", lambda name: "/bin/nox", completed(stderr="2025.2.9\n"))
    assert result == doctor.CheckResult("nox", "ok", "nox 2025.2.9 (/bin/nox)")


def test_tool_that_times_out_warns(doctor: ModuleType) -> None:
    def hang(args: list[str], **kwargs: Any) -> Any:
        raise subprocess.TimeoutExpired(args, kwargs["timeout"])

    result = doctor.check_tool("uv", lambda name: "/bin/uv", hang, timeout=2.5)
    assert result == doctor.CheckResult(
        "uv", "warn", "/bin/uv --version did not answer within 2.5 s"
    )


@pytest.mark.parametrize(
    ("run", "message"),
    [
        (
            completed(stderr="error: broken install\n", code=2),
            "exit status 2: error: broken install",
        ),
        (completed(code=1), "exit status 1: no output"),
        (completed(stdout="uv development build\n"), "no version number in its output"),
    ],
)
def test_tool_with_bad_version_output_warns(
    doctor: ModuleType, run: Callable[..., Any], message: str
) -> None:
    result = doctor.check_tool("uv", lambda name: "/bin/uv", run)
    assert result.status == "warn"
    assert result.message.startswith("/bin/uv --version failed: ")
    assert message in result.message


def test_tool_that_cannot_start_warns(doctor: ModuleType) -> None:
    def refuse(args: list[str], **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    result = doctor.check_tool("nox", lambda name: "/bin/nox", refuse)
    assert result.status == "warn"
    assert "Permission denied" in result.message


def test_tool_version_with_a_real_process(doctor: ModuleType, tmp_path: Path) -> None:
    tool = tmp_path / "fakeuv"
    tool.write_text(f"#!{sys.executable}\nprint('fakeuv 9.8.7')\n", encoding="utf-8")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    result = doctor.check_tool("fakeuv", lambda name: str(tool), subprocess.run)
    assert result == doctor.CheckResult("fakeuv", "ok", f"fakeuv 9.8.7 ({tool})")


# --------------------------------------------------------------------------- disk


@pytest.mark.parametrize(
    ("free", "status", "suffix"),
    [
        (50.0, "ok", "50.0 GiB free at /repo"),
        (10.0, "ok", "10.0 GiB free at /repo"),
        (5.0, "warn", "5.0 GiB free at /repo; below 10 GiB"),
        (2.0, "warn", "2.0 GiB free at /repo; below 10 GiB"),
        (1.5, "fail", "1.5 GiB free at /repo; need at least 2 GiB"),
    ],
)
def test_disk_thresholds(doctor: ModuleType, free: float, status: str, suffix: str) -> None:
    assert doctor.check_disk(Path("/repo"), usage(free)) == doctor.CheckResult(
        "disk", status, suffix
    )


def test_disk_unreadable_fails(doctor: ModuleType) -> None:
    def broken(path: Path) -> Any:
        raise FileNotFoundError(2, "No such file or directory")

    result = doctor.check_disk(Path("/gone"), broken)
    assert result.status == "fail"
    assert result.message.startswith("cannot read free space at /gone: ")


def test_disk_of_a_real_folder(doctor: ModuleType, tmp_path: Path) -> None:
    import shutil

    result = doctor.check_disk(tmp_path, shutil.disk_usage)
    expected_free = shutil.disk_usage(tmp_path).free / GIB
    assert f"GiB free at {tmp_path}" in result.message
    assert float(result.message.split()[0]) == pytest.approx(expected_free, abs=0.2)


# ------------------------------------------------------------------ config, models


def test_models_present_and_missing(
    doctor: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIPROD_CONFIG_DIR", str(write_config(tmp_path)))
    present = tmp_path / "models" / "checkpoints" / "aiprod-tiny.safetensors"
    present.parent.mkdir(parents=True)
    present.write_bytes(b"weights")
    results = doctor.check_models(None, Path("/elsewhere"))
    assert [(r.name, r.status) for r in results] == [
        ("config", "ok"),
        ("model aiprod-tiny", "ok"),
        ("model aiprod-19b", "note"),
    ]
    assert results[0].message == f"configuration loaded (env development, root {tmp_path})"
    assert results[1].message == f"present at {present}"
    missing = tmp_path / "models" / "pretrained" / "aiprod-19b.safetensors"
    assert results[2].message == f"not present: expected at {missing}"


def test_missing_model_note_carries_the_obtain_hint(
    doctor: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIPROD_CONFIG_DIR", str(write_config(tmp_path)))
    results = doctor.check_models(None, tmp_path, exists=lambda path: False)
    expected = tmp_path / "models" / "checkpoints" / "aiprod-tiny.safetensors"
    assert results[1] == doctor.CheckResult(
        "model aiprod-tiny",
        "note",
        f"not present: expected at {expected}; train it with `nox -s demo`",
    )


def test_broken_config_fails_with_its_message(
    doctor: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir = write_config(tmp_path)
    (config_dir / "AIPROD.json").write_text('{"project": {', encoding="utf-8")
    monkeypatch.setenv("AIPROD_CONFIG_DIR", str(config_dir))
    (result,) = doctor.check_models(None, tmp_path)
    assert result.name == "config"
    assert result.status == "fail"
    assert "AIPROD.json: invalid JSON at line 1" in result.message


def test_config_not_found_fails(doctor: ModuleType, tmp_path: Path) -> None:
    (result,) = doctor.check_models(None, tmp_path)
    assert result.status == "fail"
    assert "config/AIPROD.json not found" in result.message


def test_invalid_config_value_fails(
    doctor: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir = write_config(tmp_path, models={"aiprod-tiny": {"file": "a/b", "location": "x"}})
    monkeypatch.setenv("AIPROD_CONFIG_DIR", str(config_dir))
    (result,) = doctor.check_models(None, tmp_path)
    assert result.status == "fail"
    assert result.message.startswith("invalid configuration")
    assert "models.aiprod-tiny" in result.message


def test_empty_registry_is_a_note(doctor: ModuleType, tmp_path: Path) -> None:
    config = SimpleNamespace(env="staging", root=tmp_path, models={})
    results = doctor.check_models(lambda: config, tmp_path)
    assert results == [
        doctor.CheckResult("config", "ok", f"configuration loaded (env staging, root {tmp_path})"),
        doctor.CheckResult("models", "note", "the model registry is empty"),
    ]


def test_core_package_missing_fails(doctor: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aiprod_core.config", None)
    (result,) = doctor.check_models(None, Path())
    assert result.name == "config"
    assert result.status == "fail"
    assert result.message.startswith("aiprod-core is not importable (")


def test_repository_config_loads(doctor: ModuleType, repo_root: Path) -> None:
    from aiprod_core.config import load_config

    expected = sorted(load_config(repo_root / "config").models)
    results = doctor.check_models(None, repo_root)
    assert results[0].status == "ok"
    assert sorted(r.name.removeprefix("model ") for r in results[1:]) == expected
    assert all(r.status in {"ok", "note"} for r in results)


# ---------------------------------------------------------------- verdict, table


def result(status: str, name: str = "x") -> Any:
    return SimpleNamespace(name=name, status=status, message="m")


@pytest.mark.parametrize(
    ("statuses", "expected", "code"),
    [
        (["ok", "ok"], "ready", 0),
        (["ok", "note"], "ready", 0),
        (["ok", "warn", "note"], "ready with warnings", 0),
        (["fail", "ok"], "not ready: 1 problem", 1),
        (["fail", "warn", "fail"], "not ready: 2 problems", 1),
    ],
)
def test_verdict_and_exit_code(
    doctor: ModuleType, statuses: list[str], expected: str, code: int
) -> None:
    results = [result(status) for status in statuses]
    assert doctor.verdict(results) == expected
    assert doctor.exit_code(results) == code


def test_table_aligns_labels_and_wraps_messages(doctor: ModuleType) -> None:
    results = [
        doctor.CheckResult("python", "ok", "Python 3.11.7"),
        doctor.CheckResult("config", "fail", "invalid configuration (2 problems):\n  a: b\n  c: d"),
        doctor.CheckResult("uv", "warn", "slow"),
        doctor.CheckResult("cuda", "note", ""),
    ]
    assert doctor.format_table(results).splitlines() == [
        "ok    python  Python 3.11.7",
        "FAIL  config  invalid configuration (2 problems):",
        "              a: b",
        "              c: d",
        "warn  uv      slow",
        "note  cuda    ",
    ]


# ---------------------------------------------------------------------------- CLI


def test_main_ready(
    doctor: ModuleType,
    good_probes: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(doctor, "PROBES", good_probes)
    assert doctor.main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "ready"
    assert [line.split()[:2] for line in lines[:6]] == [
        ["ok", "python"],
        ["ok", "torch"],
        ["ok", "cuda"],
        ["ok", "uv"],
        ["ok", "nox"],
        ["ok", "disk"],
    ]
    assert any(line.startswith("note  model aiprod-19b") for line in lines)


def test_main_not_ready_without_tools(
    doctor: ModuleType,
    good_probes: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    probes = doctor.Probes(**{**vars(good_probes), "which": lambda name: None})
    monkeypatch.setattr(doctor, "PROBES", probes)
    assert doctor.main([]) == 1
    out = capsys.readouterr().out
    assert out.count('uv tool install "nox[uv]>=2026.8.10"') == 2
    assert out.splitlines()[-1] == "not ready: 2 problems"


def test_main_with_low_disk_warns(
    doctor: ModuleType,
    good_probes: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    probes = doctor.Probes(**{**vars(good_probes), "disk_usage": usage(4)})
    monkeypatch.setattr(doctor, "PROBES", probes)
    assert doctor.main([]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "ready with warnings"


def test_main_json(
    doctor: ModuleType,
    good_probes: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    probes = doctor.Probes(**{**vars(good_probes), "version_info": (3, 10, 1)})
    monkeypatch.setattr(doctor, "PROBES", probes)
    assert doctor.main(["--json"]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert payload["verdict"] == "not ready: 1 problem"
    assert payload["ready"] is False
    assert payload["checks"][0] == {
        "name": "python",
        "status": "fail",
        "message": "Python 3.10.1 is too old; AIPROD needs >= 3.11",
    }
    assert [c["name"] for c in payload["checks"]][-2:] == ["model aiprod-tiny", "model aiprod-19b"]


def test_main_reports_config_error(
    doctor: ModuleType,
    good_probes: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "AIPROD.json").write_text("[1, 2]", encoding="utf-8")
    monkeypatch.setenv("AIPROD_CONFIG_DIR", str(broken))
    monkeypatch.setattr(doctor, "PROBES", good_probes)
    assert doctor.main([]) == 1
    out = capsys.readouterr().out
    config_line = next(line for line in out.splitlines() if line.startswith("FAIL  config"))
    assert "AIPROD.json: expected a mapping of keys at the top level, got list" in config_line
    assert out.splitlines()[-1] == "not ready: 1 problem"


def test_help_shows_the_description(doctor: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc_info:
        doctor.main(["--help"])
    assert exc_info.value.code == 0
    assert "ready to develop AIPROD" in capsys.readouterr().out
