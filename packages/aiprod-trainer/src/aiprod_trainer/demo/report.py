"""What a demo run did and proved: stage timings, losses, colour checks, written files.

:class:`DemoReport` is printed for people (:meth:`DemoReport.render`) and written as
``report.json`` for machines (:meth:`DemoReport.to_json`)::

    {"profile": "full", "passed": true, "total_seconds": 412.3,
     "stages": [{"name": "data", "status": "ran", "seconds": 6.1, ...}, ...],
     "evidence": {"enforced": true, "loss": {...}, "colors": [...], "failures": []},
     "outputs": {"videos": [...], "contact_sheet": "...", "model": "..."}, ...}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aiprod_core.atomic import atomic_write_text
from aiprod_trainer.demo.evidence import ColorCheck, LossCheck, failures
from aiprod_trainer.demo.settings import DemoProfile

Status = Literal["ran", "reused"]
TRAINING_STAGES = ("vae", "dit")


@dataclass
class StageRecord:
    """One stage: whether it did its work or reused an earlier run's, and how long it took."""

    name: str
    status: Status
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "seconds": round(self.seconds, 3),
            **self.details,
        }


@dataclass
class DemoReport:
    """Everything a run reports (see the module docstring)."""

    profile: DemoProfile
    paths: dict[str, str]
    stages: list[StageRecord] = field(default_factory=list)
    loss: LossCheck | None = None
    colors: list[ColorCheck] = field(default_factory=list)
    videos: list[str] = field(default_factory=list)
    contact_sheet: str | None = None
    warnings: list[str] = field(default_factory=list)
    total_seconds: float = 0.0

    @property
    def enforced(self) -> bool:
        return self.profile.enforce_evidence

    @property
    def failures(self) -> list[str]:
        """The failed evidence checks, one line each."""
        return failures(self.loss, self.colors)

    @property
    def passed(self) -> bool:
        """Whether every evidence check passed (whatever the profile enforces)."""
        return not self.failures

    @property
    def trained(self) -> bool:
        """Whether this run trained anything (False when it reused the checkpoints)."""
        return any(s.status == "ran" for s in self.stages if s.name in TRAINING_STAGES)

    def stage(self, name: str) -> StageRecord:
        """The record of stage ``name``."""
        for record in self.stages:
            if record.name == name:
                return record
        raise KeyError(f"no stage {name!r} in this report")

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile.name,
            "passed": self.passed,
            "trained": self.trained,
            "total_seconds": round(self.total_seconds, 3),
            "stages": [record.to_json() for record in self.stages],
            "evidence": {
                "enforced": self.enforced,
                "loss": self.loss.to_json() if self.loss else None,
                "colors": [check.to_json() for check in self.colors],
                "failures": self.failures,
            },
            "outputs": {
                "videos": self.videos,
                "contact_sheet": self.contact_sheet,
                "model": self.paths.get("model"),
            },
            "paths": self.paths,
            "settings": self.profile.to_json(),
            "warnings": self.warnings,
        }

    def write(self, path: Path) -> Path:
        """Write :meth:`to_json` to ``path`` atomically."""
        atomic_write_text(path, json.dumps(self.to_json(), indent=2) + "\n")
        return path

    def render(self) -> str:
        """The summary people read at the end of a run."""
        lines = ["", "Stages:"]
        for record in self.stages:
            lines.append(f"  {record.name:<9} {record.status:<7} {record.seconds:7.1f} s")
        lines.append(f"  {'total':<17} {self.total_seconds:7.1f} s")
        lines += ["", "Evidence that the model learned:"]
        if self.loss is not None:
            lines.append(f"  {self.loss.describe()}")
        lines += [f"  {check.describe()}" for check in self.colors]
        lines += ["", "Outputs:"]
        lines += [f"  {video}" for video in self.videos]
        if self.contact_sheet:
            lines.append(f"  {self.contact_sheet} (contact sheet)")
        if "report" in self.paths:
            lines.append(f"  {self.paths['report']} (report)")
        if "model" in self.paths:
            lines.append(
                f"  {self.paths['model']} (model; try: aiprod-generate --model aiprod-tiny ...)"
            )
        lines += [f"warning: {warning}" for warning in self.warnings]
        lines.append("")
        if self.passed:
            lines.append("All evidence checks passed.")
        elif self.enforced:
            lines.append("Evidence checks FAILED:")
            lines += [f"  {line}" for line in self.failures]
        else:
            lines.append(
                f"Evidence checks not met ({len(self.failures)}); profile "
                f"{self.profile.name!r} reports them without enforcing."
            )
        return "\n".join(lines)
