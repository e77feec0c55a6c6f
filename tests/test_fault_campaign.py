"""fault_campaign: the pytest plugin's reports, the summary table and the verdict."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture
def campaign(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("testing/fault_campaign.py")


def write_report(folder: Path, name: str, cases: dict[str, tuple[str, bool, str]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        node: {"kind": kind, "guards_data": guards, "outcome": outcome}
        for node, (kind, guards, outcome) in cases.items()
    }
    (folder / f"{name}.json").write_text(json.dumps(data))


def test_rows_count_handled_unhandled_and_lost(campaign: ModuleType, tmp_path: Path) -> None:
    write_report(
        tmp_path,
        "1",
        {
            "a.py::config_ok": ("config", False, "passed"),
            "a.py::config_bad": ("config", False, "failed"),
            "b.py::interrupted_lost": ("interrupted", True, "failed"),
            "b.py::interrupted_ok": ("interrupted", True, "passed"),
        },
    )
    write_report(tmp_path, "2", {"c.py::server": ("server", False, "skipped")})
    rows = {row.kind: row for row in campaign.summarise(campaign.read_reports(tmp_path))}
    assert list(rows) == list(campaign.KINDS)
    assert rows["config"] == campaign.Row("config", 2, 1, 1, 0, ("a.py::config_bad",))
    assert rows["interrupted"] == campaign.Row(
        "interrupted", 2, 1, 0, 1, ("b.py::interrupted_lost",)
    )
    assert rows["server"].cases == 1
    assert rows["server"].unhandled == 1  # a skip is not handled
    assert rows["models"] == campaign.Row("models", 0, 0, 0, 0)
    assert campaign.verdict(list(rows.values())) == 1
    table = campaign.render(rows.values())
    assert "total" in table
    assert "not handled (interrupted): b.py::interrupted_lost" in table


def test_a_case_reported_by_several_workers_keeps_its_telling_outcome(
    campaign: ModuleType, tmp_path: Path
) -> None:
    write_report(
        tmp_path, "1", {"a.py::x": ("cli", False, "passed"), "a.py::y": ("cli", False, "not run")}
    )
    write_report(
        tmp_path, "2", {"a.py::x": ("cli", False, "not run"), "a.py::y": ("cli", False, "failed")}
    )
    cases = campaign.read_reports(tmp_path)
    assert cases["a.py::x"]["outcome"] == "passed"
    assert cases["a.py::y"]["outcome"] == "failed"


def test_verdict_needs_cases_that_all_passed(campaign: ModuleType) -> None:
    assert campaign.verdict([campaign.Row("config", 0, 0, 0, 0)]) == 1
    assert campaign.verdict([campaign.Row("config", 3, 3, 0, 0)]) == 0


def test_kinds_match_the_conftest_list(campaign: ModuleType, repo_root: Path) -> None:
    conftest = (repo_root / "conftest.py").read_text(encoding="utf-8")
    for kind in campaign.KINDS:
        assert f'    "{kind}",\n' in conftest


def test_the_plugin_reports_marked_cases_of_a_real_run(tmp_path: Path, repo_root: Path) -> None:
    reports = tmp_path / "reports"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/test_error_hierarchy.py",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            "-q",
            f"--fault-report={reports}",
        ],
        cwd=repo_root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    cases = json.loads(next(reports.glob("*.json")).read_text())
    marked = "tests/test_error_hierarchy.py::test_every_user_error_derives_from_aiprod_error"
    assert cases == {marked: {"guards_data": False, "kind": "errors", "outcome": "passed"}}


def test_summary_of_existing_reports_prints_a_table(
    campaign: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_report(tmp_path, "1", {"a.py::ok": ("cli", False, "passed")})
    assert campaign.main(["--from-reports", "--report-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["class", "cases", "handled", "unhandled", "lost"]
    assert campaign.main(["--from-reports", "--report-dir", str(tmp_path / "no"), "--json"]) == 2
