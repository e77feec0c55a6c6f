"""The run's metrics log and summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aiprod_trainer.training.run_log import RunLog, read_metrics


def test_append_trim_and_summary(tmp_path: Path) -> None:
    log = RunLog(tmp_path)
    log.trim(5)  # nothing logged yet: nothing to do
    log.append(step=0, validation_loss=2.0)
    for step in (2, 4, 6):
        log.append(step=step, loss=1.0 / step, samples_per_s=10.0 * step)
    log.append(step=6, validation_loss=0.5)
    assert [e["step"] for e in read_metrics(log.path)] == [0, 2, 4, 6, 6]
    assert all(isinstance(e["time"], float) for e in read_metrics(log.path))

    log.trim(4)
    assert [e["step"] for e in read_metrics(log.path)] == [0, 2, 4]
    log.append(step=6, loss=0.1, samples_per_s=99.0)
    summary = log.write_summary(mode="dit", step=6)
    assert summary == {
        "mode": "dit",
        "step": 6,
        "first_loss": 0.5,
        "last_loss": 0.1,
        "samples_per_s": 99.0,
        "first_validation_loss": 2.0,
        "last_validation_loss": 2.0,
        "validation": [{"step": 0, "loss": 2.0}],
    }
    assert json.loads((tmp_path / "summary.json").read_text()) == summary


def test_a_disabled_log_writes_nothing(tmp_path: Path) -> None:
    log = RunLog(tmp_path, enabled=False)
    log.append(step=1, loss=1.0)
    log.trim(0)
    summary = log.write_summary(step=1)
    assert summary["first_loss"] is None
    assert summary["validation"] == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("torn", ['{"step": 3, "lo', "[1, 2]", ""])
def test_torn_or_foreign_lines_are_skipped(tmp_path: Path, torn: str) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n' + torn)
    assert read_metrics(path) == [{"step": 1, "loss": 2.0}]
