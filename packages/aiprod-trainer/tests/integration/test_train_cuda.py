"""Training on a CUDA device with bf16 autocast (skipped, with the reason, without CUDA)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from aiprod_core.checkpoints import load_model, read_checkpoint
from aiprod_trainer.config import load_train_config
from aiprod_trainer.training.trainer import Trainer

pytestmark = [pytest.mark.gpu, pytest.mark.integration]

CUDA_RUN = {
    "data": {"validation_cache": "cache"},
    "training": {"device": "cuda", "max_steps": 60, "text_dropout": 0.0},
    "ema": {"enabled": True, "decay": 0.5},
    "checkpoints": {"every": 30},
    "validation": {"every": 60, "at_start": True, "max_items": 4},
}


def test_bf16_autocast_training_learns_and_saves_float32(
    latent_cache: Path, write_config: Callable[..., Path]
) -> None:
    trainer = Trainer(load_train_config(write_config(CUDA_RUN)))
    assert trainer.context.device.type == "cuda"
    assert next(trainer.parts.model.parameters()).device.type == "cuda"
    with trainer.parts.autocast():
        assert torch.is_autocast_enabled("cuda")
        assert torch.get_autocast_dtype("cuda") == torch.bfloat16
    result = trainer.fit()

    (_, before), (_, after) = result.validation
    assert after < 0.7 * before, result.validation
    saved = read_checkpoint(result.run_dir / "model.safetensors").tensors
    assert all(t.dtype == torch.float32 for t in saved.values() if t.is_floating_point())
    model, _ = load_model(result.run_dir / "model.safetensors", device="cpu")
    assert model.config.preset == "tiny"


def test_a_cuda_run_resumes(latent_cache: Path, write_config: Callable[..., Path]) -> None:
    config = load_train_config(write_config({**CUDA_RUN, "validation": {"every": 0}}))
    first = Trainer(config).fit(stop_at_step=30)
    assert first.step == 30
    resumed = Trainer(config, resume=True)
    assert resumed.start_step == 30
    second = resumed.fit()
    assert second.completed
    assert second.step == 60
    assert all(torch.isfinite(torch.tensor(loss)) for _, loss in second.losses)
