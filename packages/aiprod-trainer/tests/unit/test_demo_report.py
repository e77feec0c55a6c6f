"""The demo report: what is printed, what report.json holds, and whether the run trained."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aiprod_trainer.demo.evidence import color_check, loss_check
from aiprod_trainer.demo.report import DemoReport, StageRecord
from aiprod_trainer.demo.settings import FULL, QUICK
from aiprod_trainer.synthetic import PALETTE

PROMPT = "a red circle moving left on a blue background"


def frame_of(background: str, shape: str) -> np.ndarray:
    frame = np.empty((10, 10, 3), dtype=np.uint8)
    frame[...] = PALETTE[background]
    frame[:3, :3] = PALETTE[shape]
    return frame


def report_with(*, background: str = "blue", drop_to: float = 0.5, profile=FULL) -> DemoReport:
    report = DemoReport(
        profile,
        {"output": "out", "work": "out/work", "model": "m.safetensors", "report": "r.json"},
        stages=[StageRecord("vae", "reused", 0.5), StageRecord("dit", "ran", 2.0, {"steps": 3})],
        loss=loss_check(1.0, drop_to),
        colors=[color_check(frame_of(background, "red"), PROMPT)],
        videos=["out/00.mp4"],
        contact_sheet="out/contact_sheet.png",
        warnings=["something to know"],
        total_seconds=2.5,
    )
    return report


def test_passing_report_renders_and_serialises(tmp_path: Path) -> None:
    report = report_with()
    assert report.passed
    assert report.failures == []
    assert report.trained  # the dit stage ran
    text = report.render()
    assert "dit       ran         2.0 s" in text
    assert "total                 2.5 s" in text
    assert "50% lower" in text
    assert "out/contact_sheet.png (contact sheet)" in text
    assert "aiprod-generate --model aiprod-tiny" in text
    assert "warning: something to know" in text
    assert text.endswith("All evidence checks passed.")
    path = report.write(tmp_path / "report.json")
    data = json.loads(path.read_text())
    assert data["passed"] is True
    assert data["trained"] is True
    assert [s["name"] for s in data["stages"]] == ["vae", "dit"]
    assert data["stages"][1] == {"name": "dit", "status": "ran", "seconds": 2.0, "steps": 3}
    assert data["evidence"]["enforced"] is True
    assert data["evidence"]["loss"]["drop"] == pytest.approx(0.5)
    assert data["evidence"]["colors"][0]["background_ok"] is True
    assert data["outputs"] == {
        "videos": ["out/00.mp4"],
        "contact_sheet": "out/contact_sheet.png",
        "model": "m.safetensors",
    }
    assert data["settings"]["name"] == "full"


def test_failed_enforced_report_lists_the_failures() -> None:
    report = report_with(background="green", drop_to=0.9)
    assert not report.passed
    assert len(report.failures) == 2
    text = report.render()
    assert "Evidence checks FAILED:" in text
    assert "background blue not dominant" in text


def test_failed_quick_report_says_it_is_not_enforced() -> None:
    report = report_with(drop_to=0.9, profile=QUICK)
    assert not report.enforced
    assert not report.passed
    assert "profile 'quick' reports them without enforcing" in report.render()


def test_reused_run_did_not_train_and_stage_lookup() -> None:
    report = report_with()
    report.stage("dit").status = "reused"
    assert not report.trained
    assert report.stage("vae").seconds == 0.5
    with pytest.raises(KeyError, match="no stage 'nope'"):
        report.stage("nope")


def test_empty_report_renders_without_evidence() -> None:
    report = DemoReport(QUICK, {})
    assert report.passed
    assert not report.trained
    data = report.to_json()
    assert data["evidence"]["loss"] is None
    assert data["outputs"]["contact_sheet"] is None
    assert "(report)" not in report.render()
