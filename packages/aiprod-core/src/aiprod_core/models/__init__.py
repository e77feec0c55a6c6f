"""Model configurations and presets of the AIPROD family, and the model bundle.

``AiprodModel``, ``build_model`` and ``count_parameters`` are imported from
``aiprod_core.models.bundle`` on first use: the bundle imports every component, and the
components import their configs from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiprod_core.models.configs import (
    DiffusionConfig,
    GenerationDefaults,
    ModelConfig,
    TextEncoderConfig,
    TransformerConfig,
    UpsamplerConfig,
    VAEConfig,
)
from aiprod_core.models.presets import PRESETS, get_preset

if TYPE_CHECKING:
    from aiprod_core.models.bundle import AiprodModel, build_model, count_parameters

_BUNDLE_NAMES = frozenset({"AiprodModel", "build_model", "count_parameters"})

__all__ = [
    "PRESETS",
    "AiprodModel",
    "DiffusionConfig",
    "GenerationDefaults",
    "ModelConfig",
    "TextEncoderConfig",
    "TransformerConfig",
    "UpsamplerConfig",
    "VAEConfig",
    "build_model",
    "count_parameters",
    "get_preset",
]


def __getattr__(name: str) -> Any:
    if name in _BUNDLE_NAMES:
        from aiprod_core.models import bundle

        return getattr(bundle, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
