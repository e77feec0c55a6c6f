"""A training run's exported files (the final model, a LoRA adapter) carry sha256 sidecars."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from aiprod_core.checkpoints import file_sha256, read_sidecar, save_checkpoint
from aiprod_core.models import build_model, get_preset
from aiprod_trainer.config import load_train_config
from aiprod_trainer.training.lora import ADAPTER_WEIGHTS
from aiprod_trainer.training.trainer import ADAPTER_DIR, FINAL_MODEL, Trainer

pytestmark = pytest.mark.integration


def test_the_final_model_has_a_matching_sidecar(
    latent_cache: Path, write_config: Callable[..., Path]
) -> None:
    config = load_train_config(write_config({"training": {"max_steps": 2}}))
    result = Trainer(config).fit()
    final = result.run_dir / FINAL_MODEL
    assert read_sidecar(final) == file_sha256(final)


def test_a_lora_run_records_the_digests_of_its_adapter_and_merged_model(
    latent_cache: Path, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    torch.manual_seed(3)
    model = build_model(get_preset("tiny"))
    save_checkpoint(model, model.config, tmp_path / "base.safetensors")
    path = write_config(
        {
            "mode": "lora",
            "model": {"preset": "<delete>", "checkpoint": "base.safetensors"},
            "training": {"max_steps": 2},
            "lora": {"rank": 2, "alpha": 4.0},
        }
    )
    result = Trainer(load_train_config(path)).fit()
    for exported in (result.run_dir / FINAL_MODEL, result.run_dir / ADAPTER_DIR / ADAPTER_WEIGHTS):
        assert read_sidecar(exported) == file_sha256(exported), exported
