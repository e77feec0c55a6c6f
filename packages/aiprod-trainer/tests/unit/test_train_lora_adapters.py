"""LoRA adapters on the transformer: which layers, what trains, save/load, and merging."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from aiprod_core.models import get_preset
from aiprod_core.transformer import VideoTransformer
from aiprod_trainer.config import LoraSection
from aiprod_trainer.training.lora import (
    AdapterError,
    add_lora,
    load_adapter,
    load_lora_state_dict,
    lora_delta,
    lora_layers,
    lora_state_dict,
    merge_lora,
    save_adapter,
    target_pattern,
)
from aiprod_trainer.training.lora import _json as adapter_json

TINY = get_preset("tiny")


def transformer(seed: int = 0) -> VideoTransformer:
    torch.manual_seed(seed)
    model = VideoTransformer(TINY.transformer)
    nn.init.normal_(model.final_proj.weight, std=0.05)
    return model


def randomise_adapters(model: nn.Module, seed: int = 1) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))


def inputs() -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(5)
    latents = torch.randn(2, 8, 3, 4, 4, generator=generator)
    text = torch.randn(2, 32, 64, generator=generator)
    return latents, torch.tensor([0.3, 0.8]), text


def test_target_pattern_picks_exactly_the_named_layers() -> None:
    pattern = re.compile(target_pattern(["qkv", "out", "q", "kv", "gate_up", "down"]))
    names = [name for name, _ in VideoTransformer(TINY.transformer).named_modules()]
    matched = sorted(name for name in names if pattern.fullmatch(name))
    expected = sorted(
        f"blocks.{i}.{layer}"
        for i in range(TINY.transformer.depth)
        for layer in (
            "attn.qkv", "attn.out", "cross_attn.q", "cross_attn.kv", "cross_attn.out",
            "mlp.gate_up", "mlp.down",
        )
    )  # fmt: skip
    assert matched == expected
    mlp_only = re.compile(target_pattern(["down"]))
    assert sorted(n for n in names if mlp_only.fullmatch(n)) == [
        "blocks.0.mlp.down",
        "blocks.1.mlp.down",
    ]
    out_only = re.compile(target_pattern(["out"]))
    assert len([n for n in names if out_only.fullmatch(n)]) == 4


def test_fresh_adapters_change_nothing_and_only_they_train() -> None:
    model = transformer()
    with torch.no_grad():
        before = model(*inputs())
    add_lora(model, LoraSection(rank=4, alpha=8, target_modules=["qkv", "down"]))
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable == sorted(
        f"blocks.{i}.{layer}.lora_{ab}.default.weight"
        for i in range(2)
        for layer in ("attn.qkv", "mlp.down")
        for ab in "AB"
    )
    assert sorted(lora_layers(model)) == [
        "blocks.0.attn.qkv", "blocks.0.mlp.down", "blocks.1.attn.qkv", "blocks.1.mlp.down",
    ]  # fmt: skip
    with torch.no_grad():
        assert torch.equal(model(*inputs()), before)


def test_merge_gives_base_plus_delta_and_the_same_outputs() -> None:
    base_state = {k: v.clone() for k, v in transformer().state_dict().items()}
    model = add_lora(transformer(), LoraSection(rank=4, alpha=8))
    randomise_adapters(model)
    model.eval()
    with torch.no_grad():
        adapted_output = model(*inputs())
    deltas = {name: lora_delta(layer) for name, layer in lora_layers(model).items()}
    assert all(layer.scaling["default"] == 2.0 for layer in lora_layers(model).values())

    merged = merge_lora(model)
    assert not lora_layers(merged)
    state = merged.state_dict()
    assert state.keys() == base_state.keys()
    for name, tensor in base_state.items():
        layer = name.removesuffix(".weight")
        if layer in deltas:
            torch.testing.assert_close(state[name], tensor + deltas[layer], rtol=0, atol=1e-6)
            assert not torch.equal(state[name], tensor)
        else:
            assert torch.equal(state[name], tensor), name
    assert all(p.requires_grad for p in merged.parameters())
    with torch.no_grad():
        torch.testing.assert_close(merged(*inputs()), adapted_output, rtol=1e-4, atol=1e-5)


def test_adapter_save_and_load_round_trip(tmp_path: Path) -> None:
    settings = LoraSection(rank=2, alpha=4, target_modules=["q", "kv"])
    model = add_lora(transformer(), settings)
    randomise_adapters(model)
    folder = save_adapter(model, tmp_path / "adapter", settings, TINY)
    assert sorted(p.name for p in folder.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "adapter_model.safetensors.sha256",
    ]
    config = json.loads((folder / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"]) == (2, 4)

    loaded = load_adapter(transformer(), folder)
    saved, restored = lora_state_dict(model), lora_state_dict(loaded)
    assert saved.keys() == restored.keys()
    assert len(saved) == 8
    assert all(torch.equal(saved[name], restored[name]) for name in saved)
    model.eval()
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded(*inputs()), model(*inputs()))


def test_adapter_errors(tmp_path: Path) -> None:
    with pytest.raises(AdapterError) as error:
        load_adapter(transformer(), tmp_path)
    assert str(error.value) == (
        f"{tmp_path / 'adapter_model.safetensors'}: file not found; expected an adapter saved "
        "by save_adapter"
    )
    settings = LoraSection(rank=2, alpha=4)
    folder = save_adapter(add_lora(transformer(), settings), tmp_path / "a", settings, TINY)
    (folder / "adapter_config.json").write_text("{not json")
    with pytest.raises(AdapterError, match=r"adapter_config\.json: not a LoRA adapter config"):
        load_adapter(transformer(), folder)

    model = add_lora(transformer(), settings)
    state = lora_state_dict(model)
    state.pop(next(iter(state)))
    with pytest.raises(AdapterError, match="adapter weights do not fit the model: missing"):
        load_lora_state_dict(model, state)


def test_peft_config_values_become_json() -> None:
    assert adapter_json({"q", "kv"}) == ["kv", "q"]
    assert adapter_json(Path("x")) == "x"
