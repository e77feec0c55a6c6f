"""Parameter counts of the transformer presets, built on the meta device (no memory used)."""

from __future__ import annotations

import pytest
import torch

from aiprod_core.models.configs import ModelConfig
from aiprod_core.models.presets import AIPROD_19B, SMALL, TINY
from aiprod_core.transformer import VideoTransformer

pytestmark = pytest.mark.integration


def meta_transformer(config: ModelConfig) -> VideoTransformer:
    with torch.device("meta"):
        return VideoTransformer(config.transformer)


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_aiprod_19b_transformer_has_about_19b_parameters() -> None:
    model = meta_transformer(AIPROD_19B)
    assert all(p.is_meta for p in model.parameters())
    assert count(model) == 19_222_059_648
    assert 18.5e9 <= count(model) <= 19.5e9
    blocks = [name for name, _ in model.named_parameters() if name.startswith("blocks.")]
    attention_and_mlp = sum(
        p.numel()
        for name, p in model.named_parameters()
        if name.startswith("blocks.") and ("attn" in name or "mlp" in name) and "norm" not in name
    )
    assert 18.5e9 <= attention_and_mlp <= 19.5e9  # 56 blocks of 16 D^2
    assert blocks
    modulation = (
        sum(p.numel() for p in model.time_modulation.parameters())
        + sum(block.scale_shift_table.numel() for block in model.blocks)
        + model.final_table.numel()
    )
    assert modulation / count(model) <= 0.02  # adaLN-single: one shared 6 D^2 linear


def test_small_transformer_size() -> None:
    assert count(meta_transformer(SMALL)) == 156_778_368
    assert 100e6 <= count(meta_transformer(SMALL)) <= 300e6


def test_tiny_transformer_is_small_and_real() -> None:
    torch.manual_seed(0)
    model = VideoTransformer(TINY.transformer)
    assert count(model) == 411_072
    assert count(model) == count(meta_transformer(TINY))
    assert not any(p.is_meta for p in model.parameters())
