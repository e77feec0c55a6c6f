"""The demo runner: a whole quick run, its reuse on a second run, and the work-folder rules."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import pytest

from aiprod_core.checkpoints import load_model
from aiprod_core.config import AiprodConfig, load_config
from aiprod_core.models import get_preset
from aiprod_pipelines.video_io import read_video
from aiprod_trainer.data.latent_cache import LatentDataset
from aiprod_trainer.demo import runner, stages
from aiprod_trainer.demo.runner import STAMP, DemoPaths, prepare_work, run_demo
from aiprod_trainer.demo.settings import FULL, LONG, QUICK
from aiprod_trainer.demo.stages import DemoError
from aiprod_trainer.training.trainer import FitResult

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
def config(tmp_path: Path) -> AiprodConfig:
    """A configuration whose folders (models/, outputs/) lie under ``tmp_path/root``."""
    folder = tmp_path / "root" / "config"
    (folder / "env").mkdir(parents=True)
    base = {
        "project": {"name": "aiprod", "version": "0.1.0"},
        "paths": {
            "models_cache": "models/cache",
            "checkpoints": "models/checkpoints",
            "pretrained": "models/pretrained",
            "outputs": "outputs",
        },
        "models": {
            "aiprod-tiny": {
                "file": "aiprod-tiny.safetensors",
                "location": "checkpoints",
                "preset": "tiny",
            },
            "aiprod-tiny-x2": {
                "file": "aiprod-tiny-x2.safetensors",
                "location": "checkpoints",
                "preset": "tiny-x2",
            },
        },
        "serving": {"default_model": "aiprod-tiny"},
    }
    (folder / "AIPROD.json").write_text(json.dumps(base))
    (folder / "env" / "development.yaml").write_text("logging:\n  level: INFO\n")
    return load_config(folder, environ={})


def test_quick_run_trains_generates_and_a_second_run_reuses(
    config: AiprodConfig, tmp_path: Path
) -> None:
    paths = DemoPaths.from_config(config)
    assert paths.output == tmp_path / "root" / "outputs" / "demo"
    assert paths.work == paths.output / "work"
    assert paths.model == tmp_path / "root" / "models" / "checkpoints" / "aiprod-tiny.safetensors"
    console = io.StringIO()
    report = run_demo(QUICK, paths, config, stream=console)
    assert [s.name for s in report.stages] == STAGES
    assert all(s.status == "ran" for s in report.stages)
    assert report.trained
    assert report.stage("vae").details["steps"] == QUICK.vae_steps
    assert report.stage("dit").details["steps"] == QUICK.dit_steps
    assert report.stage("latents").details == {
        "train_encoded": 9,
        "train_half_encoded": 9,
        "val_encoded": 3,
        "val_half_encoded": 3,
    }
    assert report.stage("upsampler").details["steps"] == QUICK.upsampler_steps
    assert report.upsampler is not None
    assert len(report.upsampler.trained) == 3  # the held-out clips
    assert report.two_stage is not None
    model, _ = load_model(paths.model)
    assert int(model.upsampler.trained_steps) == QUICK.upsampler_steps
    printed = console.getvalue()
    assert "==> [1/9] Synthetic data" in printed
    assert "==> [9/9] Generation" in printed
    assert report.loss is not None
    assert report.loss.untrained > 0
    assert [c.prompt for c in report.prompts] == list(QUICK.prompts)
    # every figure of the new evidence is measured and kept, even where quick cannot pass
    assert report.latent_stats is not None
    assert report.latent_stats.items == 9
    assert report.conditioning is not None
    assert len(report.conditioning.clips) == QUICK.conditioning_clips
    assert len(report.unseen) == QUICK.held_out
    held_out = set(json.loads((paths.dataset / "held_out.json").read_text())["held_out"])
    assert {check.prompt for check in report.unseen} == held_out
    assert not held_out & set(QUICK.prompts)
    assert len(list((paths.output / "unseen").glob("*.mp4"))) == QUICK.held_out
    for video in report.videos:
        frames, fps, _ = read_video(video)
        assert frames.shape == (QUICK.frames, QUICK.height, QUICK.width, 3)
        assert fps == pytest.approx(QUICK.fps)
    assert Path(report.contact_sheet or "").is_file()
    saved = json.loads((paths.output / "report.json").read_text())
    assert saved["total_seconds"] == pytest.approx(report.total_seconds, abs=1e-3)
    _model, model_config = load_model(paths.model)
    assert model_config.preset == "tiny"

    again = run_demo(QUICK, paths, config, stream=io.StringIO())
    statuses = {s.name: s.status for s in again.stages}
    assert statuses == dict.fromkeys(STAGES[:6], "reused") | dict.fromkeys(STAGES[6:], "ran")
    assert not again.trained
    assert again.loss == report.loss  # the same weights measured on the same noise
    assert [c.color.ranking for c in again.prompts] == [c.color.ranking for c in report.prompts]
    evidence = json.loads((paths.output / "report.json").read_text())["evidence"]
    assert set(evidence) >= {"loss", "latent_stats", "conditioning", "prompts", "unseen"}
    assert evidence["unseen"]["passes"]["prompts"] == QUICK.held_out

    paths.model.unlink()  # a missing registry file is exported again from the work folder
    third = run_demo(QUICK, paths, config, stream=io.StringIO())
    assert third.stage("export").status == "ran"
    assert paths.model.is_file()


def test_a_profile_trains_exports_and_generates_with_its_own_preset(
    config: AiprodConfig, tmp_path: Path
) -> None:
    # the long profile's model (tiny-x2) at the quick profile's sizes
    profile = dataclasses.replace(
        QUICK,
        preset=LONG.preset,
        registry_name=LONG.registry_name,
        output_folder=LONG.output_folder,
        held_out=1,
        prompts=QUICK.prompts[:1],
    )
    paths = DemoPaths.from_config(config, profile=profile)
    assert paths.output == tmp_path / "root" / "outputs" / "demo-long"
    assert (
        paths.model == tmp_path / "root" / "models" / "checkpoints" / "aiprod-tiny-x2.safetensors"
    )
    report = run_demo(profile, paths, config, stream=io.StringIO())
    assert [s.name for s in report.stages] == STAGES
    _model, model_config = load_model(paths.model, device="cpu")
    assert model_config.preset == "tiny-x2"
    assert model_config.vae.spatial_compression == 2
    # x2 latents: 4 channels at half the clip's size, 5 frames -> 3 latent frames
    item = LatentDataset(paths.cache("train"))[0]
    assert tuple(item["latents"].shape) == (4, 3, profile.height // 2, profile.width // 2)
    assert len(report.prompts) == 1
    frames, _, _ = read_video(report.videos[0])
    assert frames.shape == (profile.frames, profile.height, profile.width, 3)
    assert not (tmp_path / "root" / "models" / "checkpoints" / "aiprod-tiny.safetensors").exists()


def test_prompts_the_text_encoder_would_cut_stop_an_enforced_run(
    config: AiprodConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = get_preset("tiny")
    short = tiny.model_copy(
        update={"text_encoder": tiny.text_encoder.model_copy(update={"max_length": 12})}
    )
    monkeypatch.setattr(runner, "get_preset", lambda name: short)
    paths = DemoPaths.from_config(config, output=tmp_path / "out")
    with pytest.raises(DemoError, match="the colour check cannot pass: 'a red circle"):
        run_demo(FULL, paths, config)
    assert not paths.work.exists()


def test_prepare_work_stamps_a_new_folder_and_accepts_it_again(tmp_path: Path) -> None:
    paths = DemoPaths(tmp_path / "out", tmp_path / "work", tmp_path / "m.safetensors")
    prepare_work(paths, QUICK, retrain=False)
    stamp = json.loads((paths.work / STAMP).read_text())
    assert stamp["fingerprint"] == QUICK.fingerprint()
    (paths.work / "kept.txt").write_text("x")
    prepare_work(paths, QUICK, retrain=False)
    assert (paths.work / "kept.txt").is_file()


def test_retrain_empties_the_work_folder(tmp_path: Path) -> None:
    paths = DemoPaths(tmp_path / "out", tmp_path / "work", tmp_path / "m.safetensors")
    prepare_work(paths, QUICK, retrain=False)
    (paths.work / "dataset").mkdir()
    prepare_work(paths, FULL, retrain=True)
    assert sorted(p.name for p in paths.work.iterdir()) == [STAMP]
    assert json.loads((paths.work / STAMP).read_text())["fingerprint"] == FULL.fingerprint()


def test_work_folder_of_other_settings_is_refused(tmp_path: Path) -> None:
    paths = DemoPaths(tmp_path / "out", tmp_path / "work", tmp_path / "m.safetensors")
    prepare_work(paths, QUICK, retrain=False)
    with pytest.raises(DemoError, match="made with other settings; pass --retrain"):
        prepare_work(paths, FULL, retrain=False)


def test_unreadable_stamp_is_refused(tmp_path: Path) -> None:
    paths = DemoPaths(tmp_path / "out", tmp_path / "work", tmp_path / "m.safetensors")
    paths.work.mkdir()
    (paths.work / STAMP).write_text("{not json")
    with pytest.raises(DemoError, match=r"demo.json: unreadable .*pass --retrain"):
        prepare_work(paths, QUICK, retrain=False)


@pytest.mark.parametrize("retrain", [False, True])
def test_foreign_folder_is_never_used_or_deleted(tmp_path: Path, retrain: bool) -> None:
    paths = DemoPaths(tmp_path / "out", tmp_path / "work", tmp_path / "m.safetensors")
    paths.work.mkdir()
    (paths.work / "precious.txt").write_text("keep me")
    with pytest.raises(DemoError, match="not a demo work folder"):
        prepare_work(paths, QUICK, retrain=retrain)
    assert (paths.work / "precious.txt").read_text() == "keep me"


def test_unfinished_training_asks_to_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class StoppedTrainer:
        def __init__(self, config: object, *, resume: bool, threads: object = None) -> None:
            assert resume

        def fit(self) -> FitResult:
            return FitResult(tmp_path, step=2, completed=False)

    monkeypatch.setattr(stages, "Trainer", StoppedTrainer)
    config = runner.vae_config(QUICK, tmp_path / "vae", tmp_path / "t.jsonl", tmp_path / "v.jsonl")
    with pytest.raises(
        DemoError, match=r"vae training stopped at step 2 of 4 .*run the demo again"
    ):
        stages.train(config)
