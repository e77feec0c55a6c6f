"""scripts/dev/demo.py: the quick demo end to end, its reuse, and its exit statuses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image

from aiprod_core.checkpoints import load_model
from aiprod_pipelines.video_io import read_video
from aiprod_trainer.demo import FULL, LONG, QUICK, DemoReport, loss_check

STAGES = [
    "data",
    "vae",
    "latents",
    "dit",
    "upsampler",
    "export",
    "evaluate",
    "condition",
    "generate",
]


@pytest.fixture
def demo(load_script) -> ModuleType:  # type: ignore[no-untyped-def]
    return load_script("dev/demo.py")


@pytest.fixture
def config_dir(tmp_path: Path, repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the repository's config/ whose relative paths resolve under tmp_path."""
    target = tmp_path / "repo" / "config"
    shutil.copytree(repo_root / "config", target)
    monkeypatch.setenv("AIPROD_CONFIG_DIR", str(target))
    monkeypatch.delenv("AIPROD_ENV", raising=False)
    return target


def test_help_describes_the_demo(demo: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "Train a tiny AIPROD model end to end" in out
    for flag in ("--retrain", "--output", "--workdir", "--quick", "--long", "--json"):
        assert flag in out


def test_quick_demo_writes_its_artefacts_then_reuses_the_checkpoints(
    demo: ModuleType, config_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, work = tmp_path / "out", tmp_path / "work"
    args = ["--quick", "--output", str(out), "--workdir", str(work), "--json"]
    assert demo.main(args) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert "==> [1/9] Synthetic data" in captured.err  # with --json, progress goes to stderr
    assert json.loads((out / "report.json").read_text()) == report
    assert {
        "profile",
        "passed",
        "trained",
        "total_seconds",
        "stages",
        "evidence",
        "outputs",
    } <= set(report)
    assert report["profile"] == "quick"
    assert report["trained"] is True
    assert [s["name"] for s in report["stages"]] == STAGES
    assert all(s["status"] == "ran" and s["seconds"] >= 0 for s in report["stages"])
    # Each figure is rounded to the millisecond, so the stages' sum may pass the total by that.
    stage_sum = sum(s["seconds"] for s in report["stages"])
    assert report["total_seconds"] >= stage_sum - 0.0005 * len(report["stages"])

    videos = [Path(v) for v in report["outputs"]["videos"]]
    assert [v.parent for v in videos] == [out] * (len(QUICK.prompts) + 1)  # and two-stage
    assert videos[-1].name.startswith("two-stage-")
    for video in videos:
        frames, fps, _ = read_video(video)
        assert frames.shape == (QUICK.frames, QUICK.height, QUICK.width, 3)
        assert fps == pytest.approx(QUICK.fps)
    with Image.open(report["outputs"]["contact_sheet"]) as sheet:
        assert sheet.format == "PNG"
        assert sheet.width > 2 * QUICK.width

    model_path = config_dir.parent / "models" / "checkpoints" / "aiprod-tiny.safetensors"
    assert report["outputs"]["model"] == str(model_path)
    _, model_config = load_model(model_path)
    assert model_config.preset == "tiny"

    evidence = report["evidence"]
    assert evidence["enforced"] is False
    assert evidence["loss"]["untrained"] > 0
    assert evidence["loss"]["required"] == 0.30
    assert [c["prompt"] for c in evidence["prompts"]] == list(QUICK.prompts)
    assert {"expected", "dominant", "background_ok", "shape_ok", "passed"} <= set(
        evidence["prompts"][0]["colors"]
    )
    assert {"latent_stats", "conditioning", "upsampler", "two_stage", "unseen"} <= set(evidence)
    assert len(list((out / "unseen").glob("*.mp4"))) == QUICK.held_out

    assert demo.main(args) == 0
    second = json.loads(capsys.readouterr().out)
    statuses = {s["name"]: s["status"] for s in second["stages"]}
    assert statuses == dict.fromkeys(STAGES[:6], "reused") | dict.fromkeys(STAGES[6:], "ran")
    assert second["trained"] is False
    assert second["evidence"]["loss"] == evidence["loss"]


def test_a_folder_not_made_by_the_demo_is_refused(
    demo: ModuleType, config_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    assert demo.main(["--quick", "--output", str(tmp_path / "o"), "--workdir", str(work)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {work}: not a demo work folder")
    assert (work / "notes.txt").read_text() == "mine"


def test_bad_configuration_is_one_error_line(
    demo: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AIPROD_CONFIG_DIR", str(tmp_path))
    assert demo.main(["--quick"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: AIPROD_CONFIG_DIR={tmp_path}: no AIPROD.json there")
    assert "Traceback" not in err


def failing_report(paths: object) -> DemoReport:
    return DemoReport(FULL, {"output": "o"}, loss=loss_check(1.0, 0.95))


def test_failed_evidence_exits_1_with_the_reason(
    demo: ModuleType,
    config_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(demo, "run_demo", lambda *args, **kwargs: failing_report(args))
    assert demo.main([]) == 1
    captured = capsys.readouterr()
    assert "Evidence checks FAILED:" in captured.out
    assert captured.err.startswith(
        "error: the evidence that the model learned does not hold: the held-out loss dropped 5%"
    )


def test_quick_profile_reports_failed_evidence_without_failing(
    demo: ModuleType,
    config_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen = {}

    def fake_run(profile, paths, config, *, retrain, stream, threads):  # type: ignore[no-untyped-def]
        seen.update(profile=profile, paths=paths, retrain=retrain, threads=threads)
        return DemoReport(profile, {}, loss=loss_check(1.0, 0.95))

    monkeypatch.setattr(demo, "run_demo", fake_run)
    assert demo.main(["--quick", "--retrain"]) == 0
    assert seen["profile"] is QUICK
    assert seen["retrain"] is True
    assert seen["threads"] == "auto"
    assert seen["paths"].output == config_dir.parent / "outputs" / "demo-quick"
    assert "without enforcing" in capsys.readouterr().out


def test_long_selects_the_x2_profile_its_folder_and_its_registry_name(
    demo: ModuleType, config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = {}

    def fake_run(profile, paths, config, *, retrain, stream, threads):  # type: ignore[no-untyped-def]
        seen.update(profile=profile, paths=paths)
        return DemoReport(profile, {}, loss=loss_check(1.0, 0.5))

    monkeypatch.setattr(demo, "run_demo", fake_run)
    assert demo.main(["--long"]) == 0
    assert seen["profile"] is LONG
    assert seen["paths"].output == config_dir.parent / "outputs" / "demo-long"
    assert (
        seen["paths"].model == config_dir.parent / "models/checkpoints/aiprod-tiny-x2.safetensors"
    )
    assert demo.main([]) == 0
    assert seen["profile"] is FULL
    assert seen["paths"].output == config_dir.parent / "outputs" / "demo"
    assert seen["paths"].model == config_dir.parent / "models/checkpoints/aiprod-tiny.safetensors"


def test_quick_and_long_exclude_each_other(
    demo: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--quick", "--long"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_interrupt_exits_130(
    demo: ModuleType,
    config_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def interrupted(*args: object, **kwargs: object) -> DemoReport:
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "run_demo", interrupted)
    assert demo.main(["--quick"]) == 130
    assert "run the demo again to continue" in capsys.readouterr().err
