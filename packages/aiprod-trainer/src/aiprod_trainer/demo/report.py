"""What a demo run did and proved: stage timings, losses, latent statistics, what the
transformer reads from each prompt word, image-to-video, colour, motion and shape checks,
written files.

:class:`DemoReport` is printed for people (:meth:`DemoReport.render`) and written as
``report.json`` for machines (:meth:`DemoReport.to_json`)::

    {"profile": "full", "passed": true, "total_seconds": 412.3,
     "stages": [{"name": "data", "status": "ran", "seconds": 6.1, ...}, ...],
     "evidence": {"enforced": true, "loss": {...}, "latent_stats": {...},
                  "conditioning": {...}, "prompts": [...], "unseen": {...}, "failures": []},
     "outputs": {"videos": [...], "contact_sheet": "...", "model": "..."}, ...}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aiprod_core.atomic import atomic_write_text
from aiprod_trainer.demo.evidence import LossCheck, failures
from aiprod_trainer.demo.fidelity import (
    ConditioningCheck,
    LatentStatsCheck,
    PromptCheck,
    UpsamplerCheck,
    tally,
)
from aiprod_trainer.demo.prompt_reading import PromptReading
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
    latent_stats: LatentStatsCheck | None = None
    prompt_reading: PromptReading | None = None
    conditioning: ConditioningCheck | None = None
    upsampler: UpsamplerCheck | None = None
    two_stage: PromptCheck | None = None
    prompts: list[PromptCheck] = field(default_factory=list)
    unseen: list[PromptCheck] = field(default_factory=list)
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
        lines = failures(self.loss, [check.color for check in self.prompts])
        if self.latent_stats is not None and not self.latent_stats.passed:
            lines.append(
                f"the normalised training latents are off by up to {self.latent_stats.mean_error:.3f} "
                f"in mean and {self.latent_stats.std_error:.3f} in std, more than "
                f"{self.latent_stats.tolerance}"
            )
        if self.conditioning is not None:
            lines += self.conditioning.failures
        if self.upsampler is not None and not self.upsampler.passed:
            lines.append(
                f"the trained upsampler's decoded PSNR is {self.upsampler.gain:+.2f} dB against "
                f"nearest-neighbour upsampling; {self.upsampler.required_gain:+.1f} dB required"
            )
        moving = _colors_and_motion(self.prompts)
        if self.prompts and moving < self.profile.required_motion_passes:
            lines.append(
                f"{moving} of {len(self.prompts)} prompts pass the colour and motion checks; "
                f"{self.profile.required_motion_passes} required"
            )
        passes = sum(check.passed for check in self.prompts)
        required = self.profile.required_prompt_passes
        if self.prompts and passes < required and self.profile.enforce_prompt_checks:
            lines.append(
                f"{passes} of {len(self.prompts)} prompts pass the colour, motion and shape "
                f"checks; {required} required"
            )
        return lines

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
                "latent_stats": self.latent_stats.to_json() if self.latent_stats else None,
                "prompt_reading": self.prompt_reading.to_json() if self.prompt_reading else None,
                "conditioning": self.conditioning.to_json() if self.conditioning else None,
                "upsampler": self.upsampler.to_json() if self.upsampler else None,
                "two_stage": self.two_stage.to_json() if self.two_stage else None,
                "prompts": [check.to_json() for check in self.prompts],
                "prompt_passes": {
                    **tally(self.prompts),
                    "colors_and_motion": _colors_and_motion(self.prompts),
                    "required_colors_and_motion": self.profile.required_motion_passes,
                    "required": self.profile.required_prompt_passes,
                    "enforced": self.profile.enforce_prompt_checks,
                },
                "unseen": {
                    "passes": tally(self.unseen),
                    "prompts": [check.to_json() for check in self.unseen],
                },
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
        if self.latent_stats is not None:
            lines.append(f"  {self.latent_stats.describe()}")
        if self.prompt_reading is not None:
            lines += [f"  {line}" for line in self.prompt_reading.describe()]
        if self.conditioning is not None:
            lines.append(f"  {self.conditioning.describe()}")
        if self.upsampler is not None:
            lines.append(f"  {self.upsampler.describe()}")
        lines += [f"  {check.describe()}" for check in self.prompts]
        if self.prompts:
            lines.append(
                f"  {_colors_and_motion(self.prompts)} of {len(self.prompts)} prompts pass "
                f"colours and motion ({self.profile.required_motion_passes} of "
                f"{len(self.prompts)} required)"
            )
            passes = sum(check.passed for check in self.prompts)
            target = f"{self.profile.required_prompt_passes} of {len(self.prompts)}"
            enforced = "required" if self.profile.enforce_prompt_checks else "target, not enforced"
            lines.append(
                f"  {passes} of {len(self.prompts)} prompts pass colours, motion and shape "
                f"({target}: {enforced})"
            )
        if self.unseen:
            counts = tally(self.unseen)
            lines.append(
                f"  {counts['prompts']} caption combinations no training clip has: colours "
                f"{counts['colors']}, motion {counts['motion']}, shape {counts['shape']}, all "
                f"three {counts['all']} (reported, not required)"
            )
        lines += ["", "Outputs:"]
        lines += [f"  {video}" for video in self.videos]
        if self.contact_sheet:
            lines.append(f"  {self.contact_sheet} (contact sheet)")
        if "report" in self.paths:
            lines.append(f"  {self.paths['report']} (report)")
        if "model" in self.paths:
            lines.append(
                f"  {self.paths['model']} (model; try: aiprod-generate --model "
                f"{self.profile.registry_name} ...)"
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


def _colors_and_motion(checks: list[PromptCheck]) -> int:
    """How many of ``checks`` pass both the colour and the motion check."""
    return sum(check.color.passed and check.motion.passed for check in checks)
