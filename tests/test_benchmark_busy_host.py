"""benchmark_busy_host: variants, the spinner's lifetime, stage parsing and the table."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture
def bench(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("testing/benchmark_busy_host.py")


def test_variants_and_their_environment(bench: ModuleType) -> None:
    assert [v.name for v in bench.variants(False)] == ["idle", "busy"]
    forced = bench.variants(True)[-1]
    assert (forced.name, forced.busy, forced.env) == ("busy-2", True, {"OMP_NUM_THREADS": "2"})


def test_the_spinner_runs_only_inside_the_block(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = []
    real_popen = bench.subprocess.Popen

    def popen(*args: object, **kwargs: object) -> object:
        process = real_popen(*args, **kwargs)
        started.append(process)
        return process

    monkeypatch.setattr(bench.subprocess, "Popen", popen)
    with bench.spinning(False):
        assert started == []
    with bench.spinning(True):
        assert len(started) == 1
        assert started[0].poll() is None
    assert started[0].poll() is not None


def test_a_run_reports_wall_time_exit_status_and_stages(
    bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "demo.py"
    report = {"stages": [{"name": "vae", "seconds": 1.5}, {"name": "dit", "seconds": 2.0}]}
    fake.write_text(
        "import json, os, sys\n"
        "assert '--retrain' in sys.argv and '--json' in sys.argv\n"
        "print(os.environ.get('OMP_NUM_THREADS', 'unset'), file=sys.stderr)\n"
        f"print(json.dumps({report!r}))\n"
    )
    monkeypatch.setattr(bench, "DEMO", fake)
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    timing = bench.run_variant(bench.Variant("idle", False, {}), quick=True, threads="auto")
    assert timing.exit_status == 0
    assert timing.stages == {"vae": 1.5, "dit": 2.0}
    assert timing.seconds > 0
    table = bench.render([timing, bench.Timing("busy", timing.seconds * 2, 0, {})])
    assert table.splitlines()[2].split()[:4] == ["busy", f"{timing.seconds * 2:.1f}", "2.00", "0"]


def test_stage_parsing_tolerates_a_missing_report(bench: ModuleType) -> None:
    assert bench.stage_seconds(b"") == {}
    assert bench.stage_seconds(json.dumps({"stages": [{"name": "x"}]}).encode()) == {}


def test_the_command_passes_the_demo_options(bench: ModuleType, tmp_path: Path) -> None:
    command = bench.demo_command(tmp_path, quick=False, threads="1")
    assert command[:2] == [sys.executable, str(bench.DEMO)]
    assert command[command.index("--threads") + 1] == "1"
    assert "--quick" not in command
    assert command[command.index("--workdir") + 1] == str(tmp_path / "work")
