"""Checkpoint files: safetensors with the model's config in the metadata.

A checkpoint holds the state dict of one module (the whole model bundle or one component)
and three metadata keys: ``aiprod.config`` (the ``ModelConfig`` as JSON, so the file can
rebuild its own model), ``aiprod.format`` and ``aiprod.component``. Tensors shared by
several names (tied weights) are stored once; ``aiprod.aliases`` maps the other names to
the stored one. Writes are atomic and record the file's sha256 in a sidecar.

Pickle files (``.pt``, ``.pth``, ``.bin``, ``.ckpt``) can run code when loaded and are
refused unless the caller passes ``allow_pickle=True``; even then only
``torch.load(weights_only=True)`` is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from torch import nn

from aiprod_core.checkpoints.digest import (
    SIDECAR_SUFFIX,
    verify_sha256,
    warn_unverified,
    write_with_sidecar,
)
from aiprod_core.checkpoints.errors import CheckpointError
from aiprod_core.checkpoints.header import (
    ALIASES_KEY,
    COMPONENT_KEY,
    CONFIG_KEY,
    FORMAT_KEY,
    TensorInfo,
    build_metadata,
    parse_aliases,
    parse_config,
    read_header,
)
from aiprod_core.models.configs import ModelConfig

PICKLE_SUFFIXES = frozenset({".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle"})

_ZIP_MAGIC = b"PK\x03\x04"
_ALIGNMENT = 64


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint's header: everything but the tensor data (cheap to read)."""

    path: Path
    config: ModelConfig
    component: str
    metadata: Mapping[str, str]
    tensors: Mapping[str, TensorInfo]
    aliases: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read into memory.

    ``tensors`` holds every state-dict name, aliases included (an alias is the same tensor
    object as the name it aliases). ``config`` and ``component`` are None only for a
    pickle file read with ``allow_pickle=True`` and no ``expected`` config. ``sha256`` is
    the verified digest, or None when none was known.
    """

    path: Path
    config: ModelConfig | None
    component: str | None
    metadata: Mapping[str, str]
    tensors: dict[str, torch.Tensor]
    sha256: str | None


def save_checkpoint(
    module: nn.Module,
    config: ModelConfig,
    path: Path,
    *,
    component: str = "bundle",
    metadata: Mapping[str, str] | None = None,
) -> str:
    """Write ``module``'s state dict to ``path`` (safetensors) and return its sha256.

    ``component`` says what ``module`` is: ``"bundle"`` (an ``AiprodModel``) or one of its
    parts (``"transformer"``, ``"vae"``, ``"upsampler"``, ``"text_encoder"``); ``config``
    is always the whole model's config. ``metadata`` adds string entries (such as a
    training step); keys starting with ``aiprod.`` are reserved. The file is written
    atomically and its digest recorded in ``<path>.sha256``.
    """
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path}: checkpoints are written as safetensors; use a .safetensors file name"
        )
    tensors, aliases = _storable_tensors(module.state_dict(), path)
    header = build_metadata(config, component, aliases, metadata or {}, path)
    return write_with_sidecar(
        path, lambda temp: safetensors.torch.save_file(tensors, temp, metadata=header)
    )


def inspect_checkpoint(path: Path) -> CheckpointInfo:
    """Read and validate a checkpoint's header without reading its tensors."""
    path = _existing_file(path)
    if _is_pickle(path):
        raise CheckpointError(_pickle_refusal(path))
    tensors, metadata = read_header(path)
    return CheckpointInfo(
        path=path,
        config=parse_config(metadata[CONFIG_KEY], path, metadata[FORMAT_KEY]),
        component=metadata[COMPONENT_KEY],
        metadata=metadata,
        tensors=tensors,
        aliases=parse_aliases(metadata.get(ALIASES_KEY), tensors, path),
    )


def read_checkpoint(
    path: Path,
    *,
    sha256: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    allow_pickle: bool = False,
) -> Checkpoint:
    """Read a checkpoint's config and tensors after verifying its sha256.

    The digest checked is ``sha256`` when given, else the one in the file's sidecar when
    there is one; with neither, the file is read unverified and a warning says so (once
    per file and process: ``aiprod_core.checkpoints.digest.warn_unverified``). ``dtype``
    casts floating-point tensors; others keep their dtype. A pickle file is refused unless
    ``allow_pickle`` (then read with ``weights_only=True``; it has no config or component).
    """
    path = _existing_file(path)
    if _is_pickle(path):
        if not allow_pickle:
            raise CheckpointError(_pickle_refusal(path))
        digest = _verified(path, sha256)
        state = _read_pickle(path, device)
        return Checkpoint(
            path, None, None, {}, {k: _prepared(v, dtype) for k, v in state.items()}, digest
        )
    info = inspect_checkpoint(path)
    digest = _verified(path, sha256)
    tensors: dict[str, torch.Tensor] = {}
    try:
        with safetensors.safe_open(path, framework="pt", device=str(torch.device(device))) as f:
            for name in info.tensors:
                tensors[name] = _prepared(f.get_tensor(name), dtype)
    except safetensors.SafetensorError as exc:
        raise CheckpointError(f"{path}: corrupt safetensors file: {exc}") from None
    for alias, name in info.aliases.items():
        tensors[alias] = tensors[name]
    return Checkpoint(path, info.config, info.component, info.metadata, tensors, digest)


def _verified(path: Path, sha256: str | None) -> str | None:
    """``verify_sha256``, warning (once per file) when no digest is known."""
    digest = verify_sha256(path, sha256)
    if digest is None:
        sidecar = path.name + SIDECAR_SUFFIX
        warn_unverified(
            path,
            f"none was given and there is no {sidecar} sidecar",
            f"to verify it from now on, record its digest: `sha256sum {path.name} > {sidecar}` "
            "in its folder",
        )
    return digest


def _existing_file(path: Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if not path.is_file():
        raise CheckpointError(f"{path}: is not a file; expected a .safetensors checkpoint")
    return path


def _is_pickle(path: Path) -> bool:
    """By name (.pt, .bin, ...) or by content (a torch.save zip archive or raw pickle).

    A safetensors file starts with its header's length (8 bytes, little-endian) and then
    the header's ``{``; a length such as 0x480 begins with the bytes of a pickle protocol
    marker, so the ``{`` decides.
    """
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return True
    try:
        with path.open("rb") as stream:
            start = stream.read(9)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if start[8:9] == b"{":
        return False
    return start[:4] == _ZIP_MAGIC or (len(start) >= 2 and start[0] == 0x80 and 2 <= start[1] <= 5)


def _pickle_refusal(path: Path) -> str:
    return (
        f"{path}: is a pickle file, which can run code when loaded; checkpoints must be "
        "safetensors. Convert it (read it with allow_pickle=True, which uses "
        "torch.load(weights_only=True), then save_checkpoint) or pass allow_pickle=True "
        "if you trust it"
    )


def _read_pickle(path: Path, device: str | torch.device) -> dict[str, torch.Tensor]:
    try:
        loaded = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises several types for unsafe or broken pickles
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: cannot be read with torch.load(weights_only=True): {first_line}"
        ) from None
    if not isinstance(loaded, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise CheckpointError(
            f"{path}: expected a state dict (a mapping of names to tensors), "
            f"got {type(loaded).__name__}"
        )
    return dict(loaded)


def _storable_tensors(
    state: Mapping[str, torch.Tensor], path: Path
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Contiguous tensors that share no memory, and the aliases of tied names.

    A name whose tensor is exactly another name's (same memory, dtype, shape and strides)
    becomes an alias of the first such name. Tensors that merely overlap another stored
    tensor's memory are copied, so each is stored with its own bytes.
    """
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[Any, ...], str] = {}
    storages: set[tuple[torch.device, int]] = set()
    for name, tensor in state.items():
        if tensor.device.type == "meta":
            raise CheckpointError(
                f"{path}: cannot save {name!r}: it is on the meta device (not materialised); "
                "load or initialise the weights first"
            )
        view = (tensor.device, tensor.data_ptr(), tensor.dtype, tensor.shape, tensor.stride())
        if view in seen and tensor.numel() > 0:
            aliases[name] = seen[view]
            continue
        seen[view] = name
        storage = (tensor.device, tensor.untyped_storage().data_ptr())
        shared = storage in storages and tensor.numel() > 0
        storages.add(storage)
        whole = tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size()
        tensors[name] = (
            tensor.detach().clone(memory_format=torch.contiguous_format)
            if shared or not whole or not tensor.is_contiguous()
            else tensor.detach()
        )
    return tensors, aliases


def _prepared(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """``tensor`` cast to ``dtype`` (floating point only) in SIMD-aligned memory.

    safetensors hands out CPU tensors at arbitrary offsets, and CPU kernels take other
    paths (with other rounding) on unaligned memory: a copy makes the loaded model compute
    exactly what the saved one did.
    """
    if dtype is not None and tensor.is_floating_point() and tensor.dtype != dtype:
        return tensor.to(dtype)
    if tensor.device.type == "cpu" and tensor.data_ptr() % _ALIGNMENT:
        return tensor.clone()
    return tensor
