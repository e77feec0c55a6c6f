"""The environment benchmark's commands, statistics and report, with a fake runner."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture
def bench(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("testing/benchmark_environments.py")


class FakeRunner:
    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds = seconds
        self.calls: list[tuple[list[str], dict[str, str]]] = []

    def __call__(self, command: Sequence[str], cwd: Path, env: Mapping[str, str]) -> float:
        self.calls.append((list(command), dict(env)))
        text = " ".join(command)
        for key, value in self.seconds.items():
            if key in text:
                return value
        return 1.0


def test_summarize_medians_and_ratios(bench: ModuleType) -> None:
    summary = bench.summarize(
        {"a": [10.0, 30.0, 20.0], "b": [4.0, 6.0, 5.0], "c": [4.0], "d": [50.0]}
    )
    assert summary["medians"] == {"a": 20.0, "b": 5.0, "c": 4.0, "d": 50.0}
    assert summary["ratios"] == {"b/c": 1.25, "d/a": 2.5}
    text = bench.markdown(summary)
    assert "| a | `nox -s tests`, empty envdir, warm uv cache | 20.0 | 10.0, 30.0, 20.0 |" in text
    assert "b/c = 1.25" in text
    assert "d/a = 2.50" in text


def test_pytest_commands_mirror_the_nox_targets(bench: ModuleType, tmp_path: Path) -> None:
    commands = bench.pytest_commands("py", tmp_path)
    assert len(commands) == 4
    core = commands[0]
    assert core[:3] == ["py", "-m", "pytest"]
    assert str(tmp_path / "packages" / "aiprod-core" / "tests") in core
    assert "--cov=aiprod_core" in core
    assert "--cov-fail-under=90" in core
    assert "--cov=scripts" in commands[3]


def test_measure_builds_each_variant(bench: ModuleType, tmp_path: Path) -> None:
    run = FakeRunner({})
    for variant in ("env", "a", "b", "d"):
        bench.measure(variant, tmp_path, tmp_path, run, None)
    commands = [" ".join(call[0]) for call in run.calls]
    assert commands[0].endswith("-s tests --install-only")
    assert "envs-uv" in commands[1]
    assert commands[1].endswith("-s tests")
    assert " -R -s tests" in commands[2]
    assert "-db virtualenv" in commands[3]
    assert "envs-pip" in commands[3]
    with pytest.raises(ValueError, match="prepared venv"):
        bench.measure("c", tmp_path, tmp_path, run, None)
    total = bench.measure("c", tmp_path, tmp_path, run, "py")
    assert total == 4.0
    assert run.calls[-1][1]["COVERAGE_FILE"].endswith(".coverage.shared")


def test_cold_variants_start_from_an_empty_envdir(bench: ModuleType, tmp_path: Path) -> None:
    stale = tmp_path / "envs-uv" / "tests-aiprod-core"
    stale.mkdir(parents=True)
    bench.measure("a", tmp_path, tmp_path, FakeRunner({}), None)
    assert not stale.exists()
    stale.mkdir(parents=True)
    bench.measure("b", tmp_path, tmp_path, FakeRunner({}), None)
    assert stale.exists()


def test_main_runs_interleaved_and_reports_json(
    bench: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(bench.shutil, "which", lambda name: "/usr/bin/uv")
    monkeypatch.setattr(bench, "prepare_shared_venv", lambda root, venv, uv: "py")
    run = FakeRunner({"-R": 2.0, "virtualenv": 9.0, "pytest": 0.5})
    code = bench.main(
        ["--repeat", "2", "--variants", "a,b,c,d", "--root", str(tmp_path), "--json"], run=run
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["medians"] == {"a": 1.0, "b": 2.0, "c": 2.0, "d": 9.0}
    assert report["ratios"] == {"b/c": 1.0, "d/a": 9.0}
    first_round = [" ".join(c[0]) for c in run.calls[:7]]
    assert "-R" in first_round[1]  # a, b, c(4 commands), d in each round


def test_main_reports_a_failing_run(
    bench: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(bench.shutil, "which", lambda name: "/usr/bin/uv")

    def failing(command: Sequence[str], cwd: Path, env: Mapping[str, str]) -> float:
        raise RuntimeError("`nox` failed (1)")

    assert bench.main(["--variants", "a", "--root", str(tmp_path)], run=failing) == 1
    assert "error: `nox` failed (1)" in capsys.readouterr().err


def test_main_rejects_bad_arguments(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main(["--variants", "a,z"]) == 2
    assert "variants must be among" in capsys.readouterr().err
    assert bench.main(["--repeat", "0"]) == 2
    monkeypatch.setattr(bench.shutil, "which", lambda name: None)
    assert bench.main(["--variants", "a"]) == 2
    assert "uv not found" in capsys.readouterr().err


def test_run_timed_measures_and_raises(bench: ModuleType, tmp_path: Path) -> None:
    elapsed = bench.run_timed(
        ["python3", "-c", "import os; assert os.environ['X'] == '1'"], tmp_path, {"X": "1"}
    )
    assert elapsed > 0
    with pytest.raises(RuntimeError, match=r"failed \(3\)"):
        bench.run_timed(["python3", "-c", "raise SystemExit(3)"], tmp_path, {})
