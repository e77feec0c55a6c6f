"""LoRA runs: only the adapters train, they are saved in peft's format, and the exported
model is the base with every adapter merged in (W + alpha / r * B @ A)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from aiprod_core.checkpoints import load_model, read_checkpoint, save_checkpoint
from aiprod_core.models import build_model, get_preset
from aiprod_trainer.config import load_train_config
from aiprod_trainer.training.lora import load_adapter, lora_delta, lora_layers
from aiprod_trainer.training.trainer import Trainer

pytestmark = pytest.mark.integration

RANK, ALPHA = 4, 8.0


@pytest.fixture
def base_checkpoint(tmp_path: Path) -> Path:
    """A tiny bundle whose transformer acts like a trained one: a fresh one's final layer
    and modulation gates are zero (so its attention and MLP layers would get no gradient)."""
    torch.manual_seed(3)
    model = build_model(get_preset("tiny"))
    with torch.no_grad():
        nn.init.normal_(model.transformer.final_proj.weight, std=0.05)
        nn.init.normal_(model.transformer.time_modulation.weight, std=0.05)
        for block in model.transformer.blocks:
            nn.init.normal_(block.scale_shift_table, std=0.1)
    path = tmp_path / "base.safetensors"
    save_checkpoint(model, model.config, path)
    return path


def lora_config(write_config: Callable[..., Path], run_dir: str) -> Path:
    return write_config(
        {
            "mode": "lora",
            "run_dir": run_dir,
            "model": {"preset": "<delete>", "checkpoint": "base.safetensors"},
            "data": {"validation_cache": "cache"},
            "optimizer": {"lr": 1.0e-2},
            "training": {"max_steps": 30, "text_dropout": 0.2},
            "lora": {"rank": RANK, "alpha": ALPHA, "dropout": 0.1},
            "checkpoints": {"every": 15},
            "validation": {"every": 30, "at_start": True, "max_items": 4},
        },
        name=f"{run_dir}.yaml",
    )


def test_lora_trains_only_adapters_and_merges_into_the_base(
    latent_cache: Path, base_checkpoint: Path, write_config: Callable[..., Path]
) -> None:
    config = load_train_config(lora_config(write_config, "lora"))
    trainer = Trainer(config)
    trainable = [n for n, p in trainer.parts.model.named_parameters() if p.requires_grad]
    assert trainable
    assert all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert len(trainable) == 2 * 7 * 2  # 2 blocks x 7 adapted layers x (A, B)
    result = trainer.fit()

    (_, before), (_, after) = result.validation
    assert after < 0.9 * before, result.validation
    checkpoint = read_checkpoint(
        result.run_dir / "checkpoints" / "step-00000030" / "model.safetensors"
    )
    assert checkpoint.component == "transformer.lora"
    assert sorted(checkpoint.tensors) == sorted(n.removeprefix("transformer.") for n in trainable)

    adapter = result.run_dir / "adapter"
    settings = json.loads((adapter / "adapter_config.json").read_text())
    assert (settings["r"], settings["lora_alpha"], settings["peft_type"]) == (RANK, ALPHA, "LORA")

    base, _ = load_model(base_checkpoint)
    merged, _ = load_model(result.run_dir / "model.safetensors")
    adapted = load_adapter(base.transformer, adapter)  # base + adapters, not merged
    deltas = {name: lora_delta(layer) for name, layer in lora_layers(adapted).items()}
    assert len(deltas) == 14
    assert all(delta.abs().max() > 0 for delta in deltas.values())
    base_state = build_base_state(base_checkpoint)
    merged_state = merged.state_dict()
    assert merged_state.keys() == base_state.keys()
    for name, tensor in base_state.items():
        layer = name.removeprefix("transformer.").removesuffix(".weight")
        if name.startswith("transformer.") and layer in deltas:
            torch.testing.assert_close(
                merged_state[name], tensor + deltas[layer], rtol=0, atol=1e-6
            )
        else:
            assert torch.equal(merged_state[name], tensor), name

    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 8, 3, 4, 4, generator=generator)
    text = torch.randn(1, 32, 64, generator=generator)
    adapted.eval()
    with torch.no_grad():
        expected = adapted(latents, torch.tensor([0.5]), text)
        actual = merged.transformer(latents, torch.tensor([0.5]), text)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


def build_base_state(path: Path) -> dict[str, torch.Tensor]:
    return dict(read_checkpoint(path).tensors)


def test_lora_resume_is_bit_identical(
    latent_cache: Path, base_checkpoint: Path, write_config: Callable[..., Path]
) -> None:
    reference = Trainer(load_train_config(lora_config(write_config, "reference"))).fit()
    config = load_train_config(lora_config(write_config, "stopped"))
    Trainer(config).fit(stop_at_step=15)
    resumed = Trainer(config, resume=True).fit()
    assert resumed.completed
    left = read_checkpoint(resumed.run_dir / "model.safetensors").tensors
    right = read_checkpoint(reference.run_dir / "model.safetensors").tensors
    assert all(torch.equal(left[name], right[name]) for name in right)
