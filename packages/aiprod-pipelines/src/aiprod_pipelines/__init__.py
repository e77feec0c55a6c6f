"""AIPROD pipelines: generation (text/image to video, two-stage), video IO, CLI and server.

The generation API is importable from here or from ``aiprod_pipelines.pipelines``; it is
loaded on first use, so ``import aiprod_pipelines`` (and the video IO subpackage) does not
import the model stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiprod_pipelines.pipelines import (
        GeneratedVideo,
        GenerationRequest,
        ImageToVideoPipeline,
        InvalidRequestError,
        LoadedModel,
        ModelLoadError,
        TextToVideoPipeline,
        TwoStagePipeline,
        load_model,
    )

__all__ = [
    "GeneratedVideo",
    "GenerationRequest",
    "ImageToVideoPipeline",
    "InvalidRequestError",
    "LoadedModel",
    "ModelLoadError",
    "TextToVideoPipeline",
    "TwoStagePipeline",
    "load_model",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("aiprod_pipelines.pipelines"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
