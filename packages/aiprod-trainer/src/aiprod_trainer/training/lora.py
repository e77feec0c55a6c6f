"""LoRA adapters on the video transformer, through peft.

    transformer = add_lora(model.transformer, settings)   # base frozen, adapters trainable
    ...train...
    save_adapter(transformer, run_dir / "adapter", settings, model.config)
    merge_lora(transformer)                                # W <- W + (alpha / r) * B @ A

Adapters go on the linear layers of every block's self-attention (``attn.qkv``,
``attn.out``), cross-attention (``cross_attn.q``, ``cross_attn.kv``, ``cross_attn.out``)
and gated MLP (``mlp.gate_up``, ``mlp.down``); ``settings.target_modules`` picks among
them. A saved adapter is peft's format (``adapter_model.safetensors`` +
``adapter_config.json``), written atomically. peft is imported on first use: it is heavy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import safetensors.torch
import torch
from torch import nn

from aiprod_core.atomic import atomic_write_text
from aiprod_core.checkpoints import CheckpointError, verify_sha256, write_with_sidecar
from aiprod_core.errors import AiprodError
from aiprod_core.models import ModelConfig
from aiprod_trainer.config import LoraSection

if TYPE_CHECKING:
    from peft import LoraConfig
    from peft.tuners.lora import LoraLayer

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
BASE_CONFIG_KEY = "aiprod_trainer.base_config"

_GROUPS = {"qkv": "attn", "out": "attn|cross_attn", "q": "cross_attn", "kv": "cross_attn"}


class AdapterError(AiprodError, ValueError):
    """A LoRA adapter folder is missing, unreadable or does not fit the model."""


def target_pattern(targets: list[str] | tuple[str, ...]) -> str:
    """A regex matching exactly the chosen layers of every transformer block.

    ``out`` names both attention output projections; ``gate_up`` and ``down`` the MLP's.
    """
    attention = sorted(t for t in targets if t in _GROUPS)
    mlp = sorted(t for t in targets if t not in _GROUPS)
    parts = []
    for target in attention:
        parts.append(rf"({_GROUPS[target]})\.{target}")
    if mlp:
        parts.append(rf"mlp\.({'|'.join(mlp)})")
    return rf"blocks\.\d+\.({'|'.join(parts)})"


def lora_config(settings: LoraSection) -> LoraConfig:
    """The peft ``LoraConfig`` of ``settings``."""
    from peft import LoraConfig

    return LoraConfig(
        r=settings.rank,
        # peft annotates lora_alpha as int, but scales by alpha / r with any positive number.
        lora_alpha=settings.alpha,  # type: ignore[arg-type]
        lora_dropout=settings.dropout,
        target_modules=target_pattern(list(settings.target_modules)),
        bias="none",
    )


def add_lora(transformer: nn.Module, settings: LoraSection) -> nn.Module:
    """Insert fresh adapters into ``transformer`` in place and freeze everything else.

    Adapters start as an exact no-op (peft initialises B to zeros), so the model's output
    is unchanged until training moves them.
    """
    from peft import inject_adapter_in_model

    transformer = inject_adapter_in_model(lora_config(settings), transformer)
    for name, parameter in transformer.named_parameters():
        parameter.requires_grad_(".lora_" in name)
    return transformer


def lora_layers(transformer: nn.Module) -> dict[str, LoraLayer]:
    """The adapted layers of ``transformer`` by module name."""
    from peft.tuners.lora import LoraLayer

    return {
        name: module
        for name, module in transformer.named_modules()
        if isinstance(module, LoraLayer)
    }


def lora_state_dict(transformer: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights in peft's naming (``blocks.0.attn.qkv.lora_A.weight``)."""
    from peft import get_peft_model_state_dict

    return {
        name: tensor.detach().clone()
        for name, tensor in get_peft_model_state_dict(transformer).items()
    }


def load_lora_state_dict(transformer: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Load adapter weights saved by :func:`lora_state_dict` into an adapted transformer."""
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(transformer, dict(state))
    unexpected = list(getattr(result, "unexpected_keys", []))
    expected = set(lora_state_dict(transformer))
    missing = sorted(expected - state.keys())
    if missing or unexpected:
        raise AdapterError(
            f"adapter weights do not fit the model: missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}"
        )


def save_adapter(
    transformer: nn.Module, folder: Path, settings: LoraSection, base: ModelConfig
) -> Path:
    """Write the adapter to ``folder`` in peft's format; returns the folder.

    The weights file's metadata records the base model's config, so the adapter says what
    it was trained on; its sha256 goes to the ``adapter_model.safetensors.sha256`` sidecar.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.contiguous() for name, t in lora_state_dict(transformer).items()}
    metadata = {BASE_CONFIG_KEY: base.model_dump_json(), "format": "pt"}
    write_with_sidecar(
        folder / ADAPTER_WEIGHTS,
        lambda temp: safetensors.torch.save_file(tensors, temp, metadata=metadata),
    )
    config = lora_config(settings).to_dict()
    atomic_write_text(folder / ADAPTER_CONFIG, json.dumps(config, indent=2, default=_json) + "\n")
    return folder


def load_adapter(transformer: nn.Module, folder: Path) -> nn.Module:
    """Add the adapter saved in ``folder`` to ``transformer`` (in place) and return it."""
    from peft import LoraConfig, inject_adapter_in_model

    folder = Path(folder)
    weights, config_file = folder / ADAPTER_WEIGHTS, folder / ADAPTER_CONFIG
    for path in (weights, config_file):
        if not path.is_file():
            raise AdapterError(f"{path}: file not found; expected an adapter saved by save_adapter")
    try:
        config = LoraConfig.from_pretrained(str(folder))
    except (ValueError, TypeError) as exc:
        raise AdapterError(f"{config_file}: not a LoRA adapter config ({exc})") from None
    try:
        verify_sha256(weights, None)
    except CheckpointError as exc:
        raise AdapterError(str(exc)) from None
    transformer = inject_adapter_in_model(config, transformer)
    state = {name: t.clone() for name, t in safetensors.torch.load_file(weights).items()}
    load_lora_state_dict(transformer, state)
    return transformer


@torch.no_grad()
def lora_delta(layer: LoraLayer, adapter: str = "default") -> torch.Tensor:
    """``scaling * B @ A``: what merging adds to ``layer``'s base weight."""
    a = layer.lora_A[adapter].weight
    b = layer.lora_B[adapter].weight
    # The adapters on our linear layers are nn.Linear: their weights are parameters.
    assert isinstance(a, torch.Tensor)
    assert isinstance(b, torch.Tensor)
    scaling: float = layer.scaling[adapter]
    return scaling * (b @ a)


@torch.no_grad()
def merge_lora(transformer: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight and put the plain layers back, in place.

    Afterwards ``transformer`` has exactly its original structure and state-dict names, with
    ``W + scaling * B @ A`` as weights, and all its parameters are trainable again.
    """
    for name, layer in lora_layers(transformer).items():
        layer.merge()
        parent_name, _, leaf = name.rpartition(".")
        setattr(transformer.get_submodule(parent_name), leaf, layer.get_base_layer())
    for parameter in transformer.parameters():
        parameter.requires_grad_(True)
    return transformer


def _json(value: Any) -> Any:
    """JSON for the few non-JSON values in a peft config (sets, enums)."""
    if isinstance(value, set | frozenset):
        return sorted(value)
    return str(value)
