"""Model configurations and presets of the AIPROD family."""

from aiprod_core.models.configs import (
    DiffusionConfig,
    ModelConfig,
    TextEncoderConfig,
    TransformerConfig,
    UpsamplerConfig,
    VAEConfig,
)
from aiprod_core.models.presets import PRESETS, get_preset

__all__ = [
    "PRESETS",
    "DiffusionConfig",
    "ModelConfig",
    "TextEncoderConfig",
    "TransformerConfig",
    "UpsamplerConfig",
    "VAEConfig",
    "get_preset",
]
