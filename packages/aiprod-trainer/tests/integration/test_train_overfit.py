"""Training actually learns: a tiny cached dataset is overfitted, the VAE reconstructs better,
and the exported bundle holds what was trained (the EMA average when enabled)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from aiprod_core.checkpoints import load_model, read_checkpoint
from aiprod_trainer.config import load_train_config
from aiprod_trainer.training.run_log import read_metrics
from aiprod_trainer.training.state import list_checkpoints
from aiprod_trainer.training.trainer import Trainer

pytestmark = pytest.mark.integration


def test_dit_overfits_a_tiny_cache_halving_the_loss(
    latent_cache: Path, write_config: Callable[..., Path]
) -> None:
    path = write_config(
        {
            "data": {"validation_cache": "cache"},
            "optimizer": {"lr": 2.0e-3},
            "schedule": {"warmup_steps": 5},
            "training": {"max_steps": 160, "log_every": 20, "text_dropout": 0.0},
            "checkpoints": {"every": 80},
            "validation": {"every": 80, "at_start": True, "max_items": 4},
        }
    )
    result = Trainer(load_train_config(path)).fit()

    assert result.completed
    assert result.step == 160
    (start_step, before), *_, (end_step, after) = result.validation
    assert (start_step, end_step) == (0, 160)
    assert after <= 0.5 * before, result.validation
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["first_validation_loss"] == pytest.approx(before)
    assert summary["last_validation_loss"] == pytest.approx(after)
    assert summary["step"] == 160
    logged = [e["step"] for e in read_metrics(result.run_dir / "metrics.jsonl") if "loss" in e]
    assert logged == [20, 40, 60, 80, 100, 120, 140, 160]
    assert [step for step, _ in list_checkpoints(result.run_dir)] == [80, 160]

    model, config = load_model(result.run_dir / "model.safetensors")
    assert config.preset == "tiny"
    trained = tensors_of(result.run_dir / "checkpoints" / "step-00000160" / "model.safetensors")
    for name, tensor in model.transformer.state_dict().items():
        assert torch.equal(tensor, trained[name]), name


def test_vae_training_lowers_reconstruction_loss_and_exports_the_ema(
    clip_manifest: Path, write_config: Callable[..., Path]
) -> None:
    path = write_config(
        {
            "mode": "vae",
            "data": {
                "cache": "<delete>",
                "manifest": "train.jsonl",
                "validation_manifest": "train.jsonl",
            },
            "optimizer": {"lr": 3.0e-3},
            "training": {"max_steps": 16, "log_every": 8},
            "ema": {"enabled": True, "decay": 0.8},
            "checkpoints": {"every": 16},
            "validation": {"every": 16, "at_start": True, "max_items": 4, "reconstructions": 1},
        }
    )
    result = Trainer(load_train_config(path)).fit()

    (_, before), (_, after) = result.validation
    assert after < 0.8 * before, result.validation
    videos = sorted(p.name for p in (result.run_dir / "validation").rglob("*.mp4"))
    assert videos == ["reconstruction-00.mp4", "reconstruction-00.mp4"]

    checkpoint = result.run_dir / "checkpoints" / "step-00000016"
    ema = tensors_of(checkpoint / "ema.safetensors")
    raw = tensors_of(checkpoint / "model.safetensors")
    model, _ = load_model(result.run_dir / "model.safetensors")
    exported = model.vae.state_dict()
    statistics = {"latent_stats.mean", "latent_stats.std"}  # measured at export, not trained
    assert exported.keys() - statistics == ema.keys() - statistics == raw.keys() - statistics
    assert all(torch.equal(exported[name], ema[name]) for name in ema.keys() - statistics)
    assert model.vae.latent_stats.measured
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["latent_stats"]["mean"] == model.vae.latent_stats.mean.tolist()
    assert any(not torch.equal(ema[name], raw[name]) for name in ema)


def tensors_of(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path).tensors
