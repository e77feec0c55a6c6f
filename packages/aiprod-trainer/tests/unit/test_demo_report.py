"""The demo report: what is printed, what report.json holds, and whether the run trained."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from aiprod_trainer.data.synthetic import ShapeClip, render_clip
from aiprod_trainer.demo.evidence import loss_check
from aiprod_trainer.demo.fidelity import (
    conditioned_clip,
    conditioning_check,
    latent_stats_check,
    prompt_check,
)
from aiprod_trainer.demo.report import DemoReport, StageRecord
from aiprod_trainer.demo.settings import FULL, QUICK

PROMPT = "a red circle moving left on a blue background"


def clip_of(background: str = "blue", motion: str = "left") -> np.ndarray:
    """A red circle on ``background`` whose centre moves from x 0.7 to 0.3 (left) or back."""
    start, end = ((0.7, 0.5), (0.3, 0.5)) if motion == "left" else ((0.3, 0.5), (0.7, 0.5))
    shape = ShapeClip("circle", "red", background, "left", 0.4, start, end)
    return render_clip(shape, width=32, height=32, frames=9)


def normalised() -> torch.Tensor:
    """A [4, 3, 8, 8] latent whose every channel has mean 0 and std 1 exactly."""
    draw = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    flat = draw.reshape(4, -1)
    flat = (flat - flat.mean(dim=1, keepdim=True)) / flat.std(dim=1, unbiased=False, keepdim=True)
    return flat.reshape(4, 3, 8, 8)


ENFORCED = dataclasses.replace(FULL, enforce_prompt_checks=True)


def report_with(
    *, background: str = "blue", drop_to: float = 0.5, profile=ENFORCED, motion: str = "left"
) -> DemoReport:
    real = clip_of()
    report = DemoReport(
        profile,
        {"output": "out", "work": "out/work", "model": "m.safetensors", "report": "r.json"},
        stages=[StageRecord("vae", "reused", 0.5), StageRecord("dit", "ran", 2.0, {"steps": 3})],
        loss=loss_check(1.0, drop_to),
        latent_stats=latent_stats_check([normalised()]),
        conditioning=conditioning_check(
            [conditioned_clip(PROMPT, real, real[0], real, clip_of(motion="right"))]
        ),
        prompts=[prompt_check(clip_of(background, motion), PROMPT)] * 3,
        unseen=[prompt_check(clip_of(motion="right"), PROMPT)],
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
    evidence = data["evidence"]
    assert evidence["prompts"][0]["colors"]["background_ok"] is True
    assert evidence["prompts"][0]["motion"]["passed"] is True
    assert evidence["prompt_passes"] == {
        "prompts": 3,
        "colors": 3,
        "motion": 3,
        "shape": 3,
        "all": 3,
        "colors_and_motion": 3,
        "required_colors_and_motion": 3,
        "required": 3,
        "enforced": True,
    }
    assert "3 of 3 prompts pass colours and motion (3 of 3 required)" in text
    assert evidence["unseen"]["passes"]["motion"] == 0
    assert evidence["conditioning"]["worst_first_frame_psnr"] is None  # identical: infinite
    assert evidence["latent_stats"]["passed"] is True
    assert "3 of 4" not in text
    assert data["outputs"] == {
        "videos": ["out/00.mp4"],
        "contact_sheet": "out/contact_sheet.png",
        "model": "m.safetensors",
    }
    assert data["settings"]["name"] == "full"


def test_failed_enforced_report_lists_the_failures() -> None:
    report = report_with(background="green", drop_to=0.9)
    assert not report.passed
    # the loss, 3 prompts' colours, the colour-and-motion count, the all-three count
    assert len(report.failures) == 1 + 3 + 1 + 1
    text = report.render()
    assert "Evidence checks FAILED:" in text
    assert "background blue not dominant" in text
    assert "0 of 3 prompts pass the colour and motion checks; 3 required" in text
    assert "0 of 3 prompts pass the colour, motion and shape checks; 3 required" in text


def test_shape_is_reported_without_failing_until_enforced() -> None:
    square = prompt_check(clip_of(), PROMPT.replace("circle", "square"))
    assert square.color.passed
    assert square.motion.passed
    assert not square.shape.passed
    report = report_with(profile=FULL)
    report.prompts = [square] * 3
    assert report.passed
    text = report.render()
    assert "3 of 3 prompts pass colours and motion (3 of 3 required)" in text
    assert "0 of 3 prompts pass colours, motion and shape (3 of 3: target, not enforced)" in text
    report.profile = ENFORCED
    assert report.failures == [
        "0 of 3 prompts pass the colour, motion and shape checks; 3 required"
    ]


def test_motion_the_wrong_way_fails_the_run_even_when_shape_is_not_enforced() -> None:
    report = report_with(motion="right", profile=FULL)
    assert report.failures == ["0 of 3 prompts pass the colour and motion checks; 3 required"]
    assert not report.passed
    one_moves = report_with(profile=FULL)
    one_moves.prompts = [one_moves.prompts[0], *report.prompts[:2]]
    assert one_moves.failures == ["1 of 3 prompts pass the colour and motion checks; 3 required"]
    one_moves.profile = dataclasses.replace(FULL, required_motion_passes=1)
    assert one_moves.passed


def test_wrong_motion_latent_statistics_and_conditioning_are_failures() -> None:
    report = report_with(motion="right")
    assert [line for line in report.failures if "prompts pass" in line] == [
        "0 of 3 prompts pass the colour and motion checks; 3 required",
        "0 of 3 prompts pass the colour, motion and shape checks; 3 required",
    ]
    real = clip_of()
    report.latent_stats = latent_stats_check([torch.full((4, 3, 8, 8), 0.5)])
    report.conditioning = conditioning_check(
        [conditioned_clip(PROMPT, real, 255 - real[0], clip_of(motion="right"), real)]
    )
    failures = "\n".join(report.failures)
    assert "normalised training latents are off by up to 0.500 in mean" in failures
    assert "frame 0 reproduces its image at" in failures
    assert "no closer to the real clip with the first frame given" in failures


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
