"""The environment benchmark's commands, statistics and report, with a fake runner."""

from __future__ import annotations

import json
import subprocess
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
        {"a": [10.0, 30.0, 20.0], "b": [4.0, 6.0, 5.0], "c": [4.0], "d": [50.0], "cached": [1.0]}
    )
    assert summary["medians"] == {"a": 20.0, "b": 5.0, "c": 4.0, "d": 50.0, "cached": 1.0}
    assert summary["ratios"] == {"b/c": 1.25, "d/a": 2.5, "cached/b": 0.2}
    text = bench.markdown(summary)
    assert "| a | `nox -s tests`, empty envdir, warm uv cache | 20.0 | 10.0, 30.0, 20.0 |" in text
    assert "b/c = 1.25" in text
    assert "d/a = 2.50" in text
    assert "cached/b = 0.20" in text


def test_pytest_commands_mirror_the_nox_targets(bench: ModuleType, repo_root: Path) -> None:
    commands = bench.pytest_commands("py", repo_root)
    assert len(commands) == 4
    core, core_env = commands[0]
    assert core[:3] == ["py", "-m", "pytest"]
    assert str(repo_root / "packages" / "aiprod-core" / "tests") in core
    assert "--cov=aiprod_core" in core
    assert "--cov-fail-under=90" in core
    assert core_env["COVERAGE_FILE"].endswith(".coverage.aiprod-core")
    tooling, tooling_env = commands[3]
    assert "--cov=scripts" in tooling
    assert tooling_env["PYTHONPATH"] == str(repo_root)


def make_repo(root: Path) -> Path:
    trainer = root / bench_trainer_file()
    trainer.parent.mkdir(parents=True)
    trainer.write_text('"""trainer"""\n')
    return root


def bench_trainer_file() -> Path:
    return Path("packages/aiprod-trainer/src/aiprod_trainer/__init__.py")


def test_measure_builds_each_variant(bench: ModuleType, tmp_path: Path, repo_root: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    run = FakeRunner({})
    for variant in ("env", "a", "b", "d", "cached"):
        bench.measure(variant, repo, tmp_path, run, None)
    commands = [" ".join(call[0]) for call in run.calls]
    assert commands[0].endswith("-s tests --install-only")
    assert "envs-uv" in commands[1]
    assert commands[1].endswith("-s tests")
    assert run.calls[1][1] == {}, "the cold run starts with an empty result cache"
    assert run.calls[2][1] == {"NOX_RESULT_CACHE": "off"}
    assert "-db virtualenv" in commands[3]
    assert "envs-pip" in commands[3]
    assert commands[4].endswith("-s tests")
    assert run.calls[4][1] == {}
    with pytest.raises(ValueError, match="prepared venv"):
        bench.measure("c", repo, tmp_path, run, None)
    total = bench.measure("c", repo_root, tmp_path, run, "py")
    assert total == 4.0
    assert run.calls[-1][1]["COVERAGE_FILE"].endswith(".coverage.shared")


def test_trainer_variants_change_one_file_and_restore_it(bench: ModuleType, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    seen: list[str] = []

    def run(command: Sequence[str], cwd: Path, env: Mapping[str, str]) -> float:
        seen.append((cwd / bench_trainer_file()).read_text())
        return 2.0

    assert bench.measure("trainer", repo, tmp_path, run, None, "1") == 2.0
    assert bench.measure("affected", repo, tmp_path, run, None, "1") == 2.0
    assert seen == ['"""trainer"""\n# benchmark change trainer 1\n',
                    '"""trainer"""\n# benchmark change affected 1\n']  # fmt: skip
    assert (repo / bench_trainer_file()).read_text() == '"""trainer"""\n'


def test_cold_variants_start_from_an_empty_envdir(bench: ModuleType, tmp_path: Path) -> None:
    stale = tmp_path / "envs-uv" / "tests-aiprod-core"
    stale.mkdir(parents=True)
    bench.measure("a", tmp_path, tmp_path, FakeRunner({}), None)
    assert not stale.exists()
    stale.mkdir(parents=True)
    bench.measure("b", tmp_path, tmp_path, FakeRunner({}), None)
    assert stale.exists()


def test_copy_repository_holds_what_git_knows(bench: ModuleType, tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "pkg").mkdir(parents=True)
    (source / "pkg" / "a.py").write_text("a = 1\n")
    (source / "untracked.txt").write_text("new\n")
    (source / "ignored.log").write_text("noise\n")
    (source / ".gitignore").write_text("*.log\n")
    subprocess.run(["git", "init", "-q"], cwd=source, check=True)
    subprocess.run(["git", "add", "pkg", ".gitignore"], cwd=source, check=True)
    copy = bench.copy_repository(source, tmp_path / "copy")
    assert (copy / "pkg" / "a.py").read_text() == "a = 1\n"
    assert (copy / "untracked.txt").is_file()
    assert not (copy / "ignored.log").exists()
    status = subprocess.run(["git", "status", "--porcelain"], cwd=copy, capture_output=True,
                            text=True, check=True)  # fmt: skip
    assert status.stdout == "", "the copy is one clean commit"


def test_main_runs_interleaved_and_reports_json(
    bench: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(bench.shutil, "which", lambda name: "/usr/bin/uv")
    monkeypatch.setattr(bench, "prepare_shared_venv", lambda root, venv, uv: "py")
    monkeypatch.setattr(bench, "copy_repository", lambda root, target: make_repo(target))
    monkeypatch.setattr(
        bench, "pytest_commands", lambda python, root: [(["py", "-m", "pytest"], {})] * 4
    )
    run = FakeRunner({"virtualenv": 9.0, "pytest": 0.5})
    code = bench.main(
        ["--repeat", "2", "--variants", "a,b,c,d", "--root", str(tmp_path), "--json"], run=run
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["medians"] == {"a": 1.0, "b": 1.0, "c": 2.0, "d": 9.0}
    assert report["ratios"] == {"b/c": 0.5, "d/a": 9.0}
    first_round = run.calls[:7]
    assert first_round[1][1] == {"NOX_RESULT_CACHE": "off"}  # a, b, c(4 commands), d in each round


def test_main_reports_a_failing_run(
    bench: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(bench.shutil, "which", lambda name: "/usr/bin/uv")
    monkeypatch.setattr(bench, "copy_repository", lambda root, target: make_repo(target))

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
