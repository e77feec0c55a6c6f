"""The model registry: names in the configuration's ``models`` section -> checkpoint files.

Each entry names a file, the models/ folder holding it (``pretrained``, ``checkpoints`` or
``cache``, from the ``paths`` section), the preset its weights belong to, optionally
their sha256, and how to obtain the file when it is missing::

    registry = ModelRegistry(load_config())
    model, config = registry.load("aiprod-19b", device="cuda", dtype=torch.bfloat16)

A file is verified against the entry's sha256, else against its ``.sha256`` sidecar. With
neither, it loads unverified and a warning (logger ``aiprod_core.registry``, once per file
and process) names the file and how to pin its digest (:data:`PIN_COMMAND`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from aiprod_core.checkpoints import inspect_checkpoint, load_model, read_sidecar, warn_unverified
from aiprod_core.checkpoints.digest import SIDECAR_SUFFIX
from aiprod_core.config import AiprodConfig, ModelEntry
from aiprod_core.errors import AiprodError
from aiprod_core.models.configs import ModelConfig

if TYPE_CHECKING:
    from aiprod_core.models.bundle import AiprodModel

logger = logging.getLogger("aiprod_core.registry")

#: How to record the digests of registered files (shown when one loads unverified).
PIN_COMMAND = "nox -s maintenance -- verify_models --pin"


class RegistryError(AiprodError):
    """A model name is not registered, or its file is missing or holds another preset."""


class ModelRegistry:
    """Resolves and loads the models the configuration registers."""

    def __init__(self, config: AiprodConfig) -> None:
        self.config = config

    @property
    def names(self) -> list[str]:
        """The registered model names, sorted."""
        return sorted(self.config.models)

    def entry(self, name: str) -> ModelEntry:
        """The registry entry ``name``; a RegistryError lists the known names otherwise."""
        try:
            return self.config.models[name]
        except KeyError:
            known = ", ".join(self.names) or "(none)"
            raise RegistryError(
                f"model {name!r} is not in the registry (the 'models' section of the "
                f"configuration); known models: {known}"
            ) from None

    def expected_path(self, name: str) -> Path:
        """Where the weights of ``name`` belong, whether or not the file is there."""
        self.entry(name)
        return self.config.model_file(name)

    def is_available(self, name: str) -> bool:
        """Whether the weights of ``name`` are in place."""
        return self.expected_path(name).is_file()

    def resolve(self, name: str) -> Path:
        """The weights file of ``name``; a RegistryError says where it belongs if missing."""
        entry = self.entry(name)
        path = self.expected_path(name)
        if path.is_file():
            return path
        problem = "is a folder, not a file" if path.is_dir() else "is missing"
        obtain = (
            f"to obtain it: {entry.obtain}"
            if entry.obtain
            else f"no 'obtain' hint is configured (models.{name}.obtain); place the file there"
        )
        raise RegistryError(
            f"model {name!r}: weights file {path} {problem} (registry location "
            f"{entry.location!r}, preset {entry.preset!r}); {obtain}"
        )

    def load(
        self,
        name: str,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
    ) -> tuple[AiprodModel, ModelConfig]:
        """The model ``name`` and its config, verified against the entry.

        The file must hold the entry's preset and, when the entry records a sha256, match
        it (else the file's sidecar digest is checked, when it has one). With neither, the
        model loads unverified and a warning says so, once per file and process.
        """
        entry = self.entry(name)
        path = self.resolve(name)
        stored = inspect_checkpoint(path).config.preset
        if stored != entry.preset:
            raise RegistryError(
                f"{path}: holds preset {stored!r} but registry entry {name!r} expects preset "
                f"{entry.preset!r}; replace the file or fix models.{name}.preset"
            )
        if entry.sha256 is None and read_sidecar(path) is None:
            warn_unverified(
                path,
                f"registry models.{name}.sha256 is null and there is no "
                f"{path.name}{SIDECAR_SUFFIX} sidecar",
                f"run `{PIN_COMMAND}` to record its digest",
                logger,
            )
        return load_model(path, sha256=entry.sha256, device=device, dtype=dtype)
