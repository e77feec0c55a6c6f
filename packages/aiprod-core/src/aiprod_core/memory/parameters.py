"""Exact parameter counts of a model's components, read off modules built on the meta device.

Building on the meta device allocates nothing; the transformer is counted from a one-block
copy (its blocks are alike), so the production preset takes a fraction of a second. The
counts are cached per configuration; ``tests/unit/test_memory_plan.py`` checks them against
whole models built by ``build_model``. The pretrained MiniLM text encoder is
not ours to build (its weights come from its package), so its published size is used.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

from aiprod_core.models.configs import (
    ModelConfig,
    TextEncoderConfig,
    TransformerConfig,
    UpsamplerConfig,
    VAEConfig,
)

MINILM_PARAMETERS = 22_713_216
"""all-MiniLM-L6-v2 (BERT, 6 layers of width 384, with its pooler)."""

LORA_TARGETS: tuple[str, ...] = (
    "attn.qkv",
    "attn.out",
    "cross_attn.q",
    "cross_attn.kv",
    "cross_attn.out",
    "mlp.gate_up",
    "mlp.down",
)
"""The linear layers of a transformer block that the trainer's LoRA adapts by default."""


@dataclass(frozen=True)
class TransformerParameters:
    """The transformer's parameters, split the way FSDP shards them (one unit per block)."""

    total: int
    per_block: int
    depth: int
    lora_layers: tuple[tuple[int, int], ...]
    """(in_features, out_features) of each :data:`LORA_TARGETS` layer of one block."""

    @property
    def outside_blocks(self) -> int:
        """Embeddings, the shared modulation and the final projection (FSDP's root unit)."""
        return self.total - self.per_block * self.depth

    def lora_parameters(self, rank: int) -> int:
        """Adapter parameters at ``rank``: ``rank * (in + out)`` per adapted layer and block."""
        per_block = sum(rank * (fan_in + fan_out) for fan_in, fan_out in self.lora_layers)
        return per_block * self.depth


@dataclass(frozen=True)
class ModelParameters:
    """Parameters per component of a ``ModelConfig``."""

    transformer: TransformerParameters
    vae: int
    vae_decoder: int
    upsampler: int
    text_encoder: int

    @property
    def total(self) -> int:
        return self.transformer.total + self.vae + self.upsampler + self.text_encoder

    def by_component(self) -> dict[str, int]:
        return {
            "transformer": self.transformer.total,
            "vae": self.vae,
            "upsampler": self.upsampler,
            "text_encoder": self.text_encoder,
        }


def _count(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


@functools.lru_cache(maxsize=16)
def transformer_parameters(config: TransformerConfig) -> TransformerParameters:
    """Counts of a ``VideoTransformer`` built on the meta device.

    Its blocks are all alike, so a one-block copy is built: everything but the blocks,
    plus one block, ``depth - 1`` times that block's count short of the whole model.
    """
    from aiprod_core.transformer import VideoTransformer

    with torch.device("meta"):
        model = VideoTransformer(config.model_copy(update={"depth": 1}))
    block = model.blocks[0]
    layers = []
    for name in LORA_TARGETS:
        layer = block.get_submodule(name)
        assert isinstance(layer, nn.Linear)
        layers.append((layer.in_features, layer.out_features))
    per_block = _count(block)
    total = _count(model) + (config.depth - 1) * per_block
    return TransformerParameters(total, per_block, config.depth, tuple(layers))


@functools.lru_cache(maxsize=16)
def vae_parameters(config: VAEConfig) -> tuple[int, int]:
    """(whole VAE, decoder alone) of a ``CausalVideoVAE`` built on the meta device."""
    from aiprod_core.vae import CausalVideoVAE

    with torch.device("meta"):
        vae = CausalVideoVAE(config)
    return _count(vae), _count(vae.decoder)


@functools.lru_cache(maxsize=16)
def upsampler_parameters(config: UpsamplerConfig) -> int:
    from aiprod_core.upsampler import LatentUpsampler

    with torch.device("meta"):
        return _count(LatentUpsampler(config))


@functools.lru_cache(maxsize=16)
def text_encoder_parameters(config: TextEncoderConfig) -> int:
    if config.kind == "minilm":
        return MINILM_PARAMETERS
    from aiprod_core.text import BuiltinTextEncoder

    with torch.device("meta"):
        return _count(BuiltinTextEncoder(config))


def model_parameters(config: ModelConfig) -> ModelParameters:
    """Exact parameter counts of every component of ``config`` (cached per component)."""
    vae, decoder = vae_parameters(config.vae)
    return ModelParameters(
        transformer=transformer_parameters(config.transformer),
        vae=vae,
        vae_decoder=decoder,
        upsampler=upsampler_parameters(config.upsampler),
        text_encoder=text_encoder_parameters(config.text_encoder),
    )
