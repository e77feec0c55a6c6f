"""Which weights ``aiprod-generate`` uses, and their model config before loading them.

The choice is one of: a registry model (``--model``, default ``serving.default_model``), a
checkpoint file (``--checkpoint``), or randomly initialised weights of a preset
(``--random-weights``, never implied). The expected :class:`ModelConfig` comes from the
checkpoint's header or the preset, so a request can be validated and missing weights
reported before anything heavy is loaded.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from aiprod_core.checkpoints import inspect_checkpoint
from aiprod_core.config import AiprodConfig
from aiprod_core.errors import AiprodError
from aiprod_core.models import ModelConfig, get_preset
from aiprod_core.registry import ModelRegistry, RegistryError
from aiprod_pipelines.cli.arguments import UsageError

RANDOM_WEIGHTS_WARNING = (
    "using RANDOM, UNTRAINED weights of preset {preset}: the video will be noise"
)
RANDOM_WEIGHTS_HINT = (
    "to try the pipeline without trained weights, pass --random-weights (the video will be noise)"
)


class MissingWeightsError(AiprodError):
    """The registry model's weights file is not in place (the message says how to get it)."""


@dataclass(frozen=True)
class ModelChoice:
    """The weights to load: a registry ``name``, a ``checkpoint``, or a random ``preset``."""

    name: str | None
    checkpoint: Path | None
    preset: str | None
    random_weights: bool

    @property
    def warning(self) -> str | None:
        """The line that announces random weights, or None for real ones."""
        if not self.random_weights:
            return None
        return RANDOM_WEIGHTS_WARNING.format(preset=self.preset)


def choose_model(args: argparse.Namespace, config: AiprodConfig) -> ModelChoice:
    """The weights the parsed ``args`` ask for.

    Random weights take ``--preset``, else the preset of ``--model`` (default:
    ``serving.default_model``); they carry a registry name only when ``--model`` gave one.

    Raises:
        UsageError: ``--model`` names no registered model.
    """
    if args.checkpoint is not None:
        return ModelChoice(None, args.checkpoint, None, random_weights=False)
    if args.random_weights and args.preset and args.model is None:
        return ModelChoice(None, None, args.preset, random_weights=True)
    name = args.model or config.serving.default_model
    try:
        entry = ModelRegistry(config).entry(name)
    except RegistryError as exc:
        raise UsageError(f"--model: {exc}") from None
    if args.random_weights:
        return ModelChoice(args.model, None, args.preset or entry.preset, random_weights=True)
    return ModelChoice(name, None, None, random_weights=False)


def expected_model_config(choice: ModelChoice, config: AiprodConfig) -> ModelConfig:
    """The config the chosen weights will have, read without loading them.

    Raises:
        ConfigError: ``--preset`` names no preset.
        MissingWeightsError: the registry model's file is missing, with a hint about
            ``--random-weights``.
        CheckpointError: the checkpoint is missing, unsafe or unreadable.
    """
    if choice.random_weights:
        return get_preset(str(choice.preset))
    if choice.checkpoint is not None:
        return inspect_checkpoint(choice.checkpoint).config
    try:
        path = ModelRegistry(config).resolve(str(choice.name))
    except RegistryError as exc:
        raise MissingWeightsError(f"{exc}; {RANDOM_WEIGHTS_HINT}") from None
    return inspect_checkpoint(path).config
