"""A run's records for people and scripts: ``metrics.jsonl`` and ``summary.json``.

``metrics.jsonl`` gets one JSON object per line: training entries (``step``, ``loss``,
``lr``, ``grad_norm``, ``steps_per_s``, ``samples_per_s``) every ``log_every`` steps and
validation entries (``step``, ``validation_loss``), each with a ``time``. Only rank 0
writes. A resumed run first drops the entries of steps after its checkpoint, so the file
reads as one uninterrupted run. ``summary.json`` condenses it when the run completes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from aiprod_core.atomic import atomic_write_text
from aiprod_core.documents import LINE_LIMITS, DocumentError, parse_json

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The entries of a run's ``metrics.jsonl``, skipping a line torn by a killed run."""
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = parse_json(line, str(path), limits=LINE_LIMITS)
        except DocumentError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


class RunLog:
    """Appends to ``<run_dir>/metrics.jsonl`` (a no-op when ``enabled`` is false)."""

    def __init__(self, run_dir: Path, *, enabled: bool = True) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self.summary_path = Path(run_dir) / SUMMARY_FILE
        self.enabled = enabled

    def append(self, **entry: Any) -> None:
        """Add one entry (with the current ``time``)."""
        if not self.enabled:
            return
        entry["time"] = time.time()
        with self.path.open("a", encoding="utf-8") as stream:
            stream.write(json.dumps(entry) + "\n")

    def trim(self, last_step: int) -> None:
        """Drop entries of steps after ``last_step`` (a resumed run redoes them)."""
        if self.enabled and self.path.is_file():
            kept = [e for e in read_metrics(self.path) if e.get("step", 0) <= last_step]
            atomic_write_text(self.path, "".join(json.dumps(e) + "\n" for e in kept))

    def write_summary(self, **fields: Any) -> dict[str, Any]:
        """Write ``summary.json``: ``fields`` plus first/last losses and throughput."""
        entries = read_metrics(self.path) if self.path.is_file() else []
        losses = [e for e in entries if "loss" in e]
        validation = [e for e in entries if "validation_loss" in e]
        summary = {
            **fields,
            "first_loss": losses[0]["loss"] if losses else None,
            "last_loss": losses[-1]["loss"] if losses else None,
            "samples_per_s": losses[-1]["samples_per_s"] if losses else None,
            "first_validation_loss": validation[0]["validation_loss"] if validation else None,
            "last_validation_loss": validation[-1]["validation_loss"] if validation else None,
            "validation": [{"step": e["step"], "loss": e["validation_loss"]} for e in validation],
        }
        if self.enabled:
            atomic_write_text(self.summary_path, json.dumps(summary, indent=2) + "\n")
        return summary
