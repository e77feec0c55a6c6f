"""benchmark_replicas starts aiprod-serve replicas (SQLite, PostgreSQL) and load-tests them.

The end-to-end test runs the real thing on a small workload: one replica on SQLite, two
on a PostgreSQL server the script starts from the system's binaries (skipped with a
reason where there are none, failed with ``AIPROD_REQUIRE_POSTGRES=1`` as in CI).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


@pytest.fixture(scope="module")
def br(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("testing/benchmark_replicas.py")


def report(jobs_per_second: float, p95: float, *, ok: bool = True) -> dict[str, Any]:
    """A load_test report holding the figures the benchmark reads."""
    return {
        "ok": ok,
        "throughput": {"jobs_per_second": jobs_per_second},
        "latency_seconds": {
            "job": {"p50": p95 / 2, "p95": p95},
            "submit": {"p95": 0.01},
            "request": {"p50": 0.002, "p95": 0.02},
        },
        "jobs": {"lost": 0},
        "duplicated": 0,
        "server_errors": 0,
    }


def test_variants_name_a_database_and_a_replica_count(br: ModuleType) -> None:
    assert br.Variant.parse("postgres:2") == br.Variant("postgres", 2)
    assert br.Variant.parse(" sqlite:1 ").name == "1 x SQLite"
    assert br.Variant("postgres", 3).name == "3 x PostgreSQL"
    for text in ("mysql:2", "postgres", "postgres:0", "sqlite:100"):
        with pytest.raises(Exception, match="expected DATABASE:REPLICAS"):
            br.Variant.parse(text)


def test_defaults_compare_one_sqlite_replica_with_two_on_postgres(br: ModuleType) -> None:
    args = br.parse_args([])
    assert args.variant == [br.Variant("sqlite", 1), br.Variant("postgres", 2)]
    assert (args.jobs, args.concurrency, args.steps, args.step_seconds) == (200, 8, 4, 0.05)
    assert (args.rounds, args.max_load) == (3, 1.0)
    repeated = br.parse_args(["--variant", "sqlite:1", "--variant", "sqlite:1"])
    assert repeated.variant == [br.Variant("sqlite", 1)]


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--jobs", "0"], "--jobs must be >= 1"),
     (["--poll-interval", "0"], "--poll-interval must be > 0"),
     (["--step-seconds", "-1"], "--step-seconds must be > 0"),
     (["--variant", "mysql:1"], "expected DATABASE:REPLICAS")],
)  # fmt: skip
def test_bad_arguments_exit_2(
    br: ModuleType, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        br.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def executable(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_postgres_binaries_from_path_then_the_newest_system_version(
    br: ModuleType, tmp_path: Path
) -> None:
    system = tmp_path / "lib"
    for version in ("14", "16", "9.6"):
        executable(system / version / "bin" / "initdb")
        executable(system / version / "bin" / "pg_ctl")
    executable(system / "17" / "bin" / "initdb")  # no pg_ctl: incomplete
    empty = str(tmp_path / "empty")
    assert br.postgres_binaries(empty, system) == system / "16" / "bin"
    on_path = tmp_path / "path"
    executable(on_path / "initdb")
    executable(on_path / "pg_ctl")
    assert br.postgres_binaries(str(on_path), system) == on_path.resolve()
    assert br.postgres_binaries(empty, tmp_path / "missing") is None


def test_medians_per_variant_side_by_side(br: ModuleType) -> None:
    variants = [br.Variant("sqlite", 1), br.Variant("postgres", 2)]
    runs = [
        {"variant": "1 x SQLite", "round": 1, "load_average": 0.5, "report": report(4.0, 2.0)},
        {"variant": "2 x PostgreSQL", "round": 1, "load_average": 0.6, "report": report(8.0, 1.0)},
        {"variant": "1 x SQLite", "round": 2, "load_average": 0.4, "report": report(3.0, 2.4)},
        {"variant": "2 x PostgreSQL", "round": 2, "load_average": 0.7,
         "report": report(7.0, 1.2, ok=False)},
        {"variant": "1 x SQLite", "round": 3, "load_average": 0.3, "report": report(5.0, 2.2)},
        {"variant": "2 x PostgreSQL", "round": 3, "load_average": 0.2,
         "report": {"ok": False, "error": "no report"}},
    ]  # fmt: skip
    summary = br.summarize(runs, variants)
    sqlite, postgres = summary["1 x SQLite"], summary["2 x PostgreSQL"]
    assert sqlite["medians"]["jobs/s"] == 4.0
    assert sqlite["medians"]["job latency p95 (s)"] == 2.2
    assert (sqlite["runs"], sqlite["passed"]) == (3, 3)
    assert postgres["medians"]["jobs/s"] == 7.5  # of the two runs with a report
    assert (postgres["runs"], postgres["passed"]) == (3, 1)
    settings = {"jobs": 200, "concurrency": 8, "steps": 4, "step_seconds": 0.05, "rounds": 3}
    host = {"cpus": 2, "system": "Linux 6"}
    table = br.render({"settings": settings, "host": host, "runs": runs, "summary": summary})
    lines = table.splitlines()
    assert lines[0] == (
        "aiprod-serve under load: 200 jobs per run, 8 clients, synthetic generator 4 x 0.05 s, "
        "median of 3 round(s)"
    )
    assert lines[1].endswith("1-minute load at each start: 0.50, 0.60, 0.40, 0.70, 0.30, 0.20")
    assert lines[3].split() == ["figure", "1", "x", "SQLite", "2", "x", "PostgreSQL"]
    assert lines[4].split() == ["jobs/s", "4.00", "7.50"]
    assert lines[6].split() == ["job", "latency", "p95", "(s)", "2.200", "1.100"]
    assert lines[-1].split() == ["runs", "passed", "3/3", "1/3"]


def test_waiting_for_a_quiet_machine(br: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    loads = iter([2.5, 1.4, 0.6])
    monkeypatch.setattr(br.os, "getloadavg", lambda: (next(loads), 0.0, 0.0))
    monkeypatch.setattr(br.time, "sleep", lambda seconds: None)
    assert br.wait_for_quiet(1.0, 60) == 0.6
    monkeypatch.setattr(br.os, "getloadavg", lambda: (3.0, 0.0, 0.0))
    assert br.wait_for_quiet(1.0, 0) == 3.0  # no wait


FAST = ["--jobs", "6", "--concurrency", "2", "--rounds", "1", "--step-seconds", "0.01",
        "--quiet-timeout", "0", "--json"]  # fmt: skip


def test_a_server_that_cannot_start_stops_the_benchmark(
    br: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(br, "LAUNCHER", "import sys; print('no model', file=sys.stderr); exit(3)")
    assert br.main([*FAST, "--variant", "sqlite:1"]) == 2
    err = capsys.readouterr().err
    assert "benchmark_replicas: error: aiprod-serve exited with status 3" in err
    assert "no model" in err


def test_a_load_test_without_a_report_fails_the_run(
    br: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:  # fmt: skip
    broken = tmp_path / "load_test.py"
    broken.write_text(
        "import sys\nprint('cannot reach the server', file=sys.stderr)\nsys.exit(2)\n"
    )
    monkeypatch.setattr(br, "LOAD_TEST", broken)
    assert br.main([*FAST, "--variant", "sqlite:1"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is False
    assert result["runs"][0]["report"] == {"ok": False, "error": "cannot reach the server"}
    assert result["summary"]["1 x SQLite"]["passed"] == 0


@pytest.mark.slow
def test_one_sqlite_replica_against_two_on_postgres(
    br: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    if br.postgres_binaries() is None:
        reason = "no PostgreSQL server binaries (initdb, pg_ctl) on PATH; .ci/run installs them"
        if os.environ.get("AIPROD_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    assert br.main(FAST) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is True
    assert [run["variant"] for run in result["runs"]] == ["1 x SQLite", "2 x PostgreSQL"]
    for run, replicas in zip(result["runs"], (1, 2), strict=True):
        got = run["report"]
        assert len(got["urls"]) == replicas
        assert got["jobs"] == {"accepted": 6, "completed": 6, "lost": 0}
        assert (got["duplicated"], got["server_errors"]) == (0, 0)
        assert got["audit"]["jobs"] == 6  # every job listed once, by the last replica
        assert got["audit"]["url"] == got["urls"][-1]
    for summary in result["summary"].values():
        assert summary["passed"] == summary["runs"] == 1
        assert summary["medians"]["jobs/s"] > 0
