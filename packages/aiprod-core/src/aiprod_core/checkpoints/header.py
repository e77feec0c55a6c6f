"""The safetensors header of a checkpoint: read and checked without trusting the file.

A safetensors file starts with an 8-byte little-endian header length, then that many bytes
of JSON (tensor names -> dtype, shape, data offsets, plus ``__metadata__``), then the
tensor data. Everything here is checked against the file's real size, so a truncated or
corrupt file is reported as such, naming the file, before any tensor is read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from aiprod_core.checkpoints.errors import CheckpointError
from aiprod_core.documents import HEADER_LIMITS, DocumentError, Limits, parse_json
from aiprod_core.models.configs import ModelConfig
from aiprod_core.problems import at_most_listed, validation_problems

FORMAT_VERSION = "2"
"""Format 2: the transformer uses adaLN-single and RoPE positions in seconds and pixels, and
the VAE stores its latent statistics."""
READABLE_FORMATS = ("1", FORMAT_VERSION)
"""Format 1 files are read: their VAE, upsampler and text encoder still load (the VAE with
identity latent statistics); their transformer does not fit (see checkpoints.loading)."""
CONFIG_KEY = "aiprod.config"
FORMAT_KEY = "aiprod.format"
COMPONENT_KEY = "aiprod.component"
ALIASES_KEY = "aiprod.aliases"
RESERVED_PREFIX = "aiprod."
REQUIRED_KEYS = (CONFIG_KEY, FORMAT_KEY, COMPONENT_KEY)

_MAX_HEADER_BYTES = HEADER_LIMITS.max_bytes
#: The alias map is flat: names to names.
_ALIASES_LIMITS = Limits(max_depth=1)


@dataclass(frozen=True)
class TensorInfo:
    """What a checkpoint's header says about one stored tensor."""

    dtype: str
    shape: tuple[int, ...]


def read_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """The stored tensors and the metadata of a checkpoint, with the aiprod keys checked."""
    header = _read_json_header(path)
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise CheckpointError(f"{path}: corrupt header: its metadata is not a string mapping")
    missing = [key for key in REQUIRED_KEYS if key not in metadata]
    if missing:
        raise CheckpointError(
            f"{path}: missing metadata {', '.join(missing)}; expected a checkpoint written by "
            "aiprod_core.checkpoints.save_checkpoint, which stores the model config there"
        )
    if metadata[FORMAT_KEY] not in READABLE_FORMATS:
        raise CheckpointError(
            f"{path}: checkpoint format {metadata[FORMAT_KEY]!r} is not supported; "
            f"expected format {FORMAT_VERSION!r}"
        )
    tensors = {
        name: TensorInfo(dtype=entry["dtype"], shape=tuple(entry["shape"]))
        for name, entry in header.items()
    }
    return tensors, metadata


def _read_json_header(path: Path) -> dict[str, Any]:
    """The safetensors JSON header, checked against the file's size."""
    size = path.stat().st_size
    with path.open("rb") as stream:
        prefix = stream.read(8)
        if len(prefix) < 8:
            raise CheckpointError(
                f"{path}: is truncated or not a safetensors file ({size} bytes; a safetensors "
                "file starts with an 8-byte header length)"
            )
        length = int.from_bytes(prefix, "little")
        if length > min(size - 8, _MAX_HEADER_BYTES):
            raise CheckpointError(
                f"{path}: is truncated or not a safetensors file (its header length "
                f"{length} bytes does not fit in the file of {size} bytes)"
            )
        raw = stream.read(length)
    header = parse_json(raw, f"{path}: header", limits=HEADER_LIMITS, error=_corrupt_header)
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt header: expected a JSON object")
    data_bytes = size - 8 - length
    needed = _data_end(header, path)
    if data_bytes < needed:
        raise CheckpointError(
            f"{path}: is truncated: its header describes {needed} bytes of tensor data "
            f"but the file holds {data_bytes}"
        )
    if data_bytes > needed:
        raise CheckpointError(
            f"{path}: is corrupt: {data_bytes - needed} unexpected bytes after the tensor data"
        )
    return header


def _corrupt_header(message: str) -> CheckpointError:
    return CheckpointError(f"{message}; the file is corrupt or not a safetensors file")


def _data_end(header: Mapping[str, Any], path: Path) -> int:
    """Where the last tensor's bytes end, validating every tensor entry on the way."""
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        stop = _entry_end(entry)
        if stop is None:
            raise CheckpointError(f"{path}: corrupt header: bad entry for tensor {name!r}")
        end = max(end, stop)
    return end


def _entry_end(entry: Any) -> int | None:
    """Where one tensor entry's bytes end, or None if the entry is malformed."""
    try:
        start, stop = entry["data_offsets"]
        valid = isinstance(entry["dtype"], str) and all(
            isinstance(d, int) and d >= 0 for d in entry["shape"]
        )
    except (KeyError, TypeError, ValueError):
        return None
    if valid and isinstance(start, int) and isinstance(stop, int) and 0 <= start <= stop:
        return stop
    return None


def parse_config(text: str, path: Path, format_version: str = FORMAT_VERSION) -> ModelConfig:
    """The ``aiprod.config`` metadata as a validated ``ModelConfig``.

    A format 1 config names no ``transformer.latent_scale``; it is the VAE's compression.
    """
    try:
        if format_version == "1":
            data = parse_json(text, f"{path}: its {CONFIG_KEY} metadata", error=CheckpointError)
            return ModelConfig.model_validate(_upgraded_from_format_1(data))
        return ModelConfig.model_validate_json(text)
    except ValidationError as exc:
        problems = [
            f"{problem.key or '(top level)'}: {problem.summary}"
            for problem in validation_problems(exc)
        ]
        listed = "; ".join(at_most_listed(problems))
        raise CheckpointError(
            f"{path}: its {CONFIG_KEY} metadata is not a valid model config: {listed}"
        ) from None


def _upgraded_from_format_1(data: Any) -> Any:
    """A format 1 config with the fields format 2 added filled in from the others."""
    if isinstance(data, dict) and isinstance(data.get("transformer"), dict):
        vae = data.get("vae")
        if isinstance(vae, dict):
            scale = [vae.get("temporal_compression"), vae.get("spatial_compression")]
            data["transformer"].setdefault("latent_scale", scale)
    return data


def parse_aliases(
    text: str | None, tensors: Mapping[str, TensorInfo], path: Path
) -> dict[str, str]:
    """The ``aiprod.aliases`` metadata: alias -> stored tensor name."""
    if text is None:
        return {}
    try:
        aliases = parse_json(text, f"{path}: {ALIASES_KEY}", limits=_ALIASES_LIMITS)
    except DocumentError:
        aliases = None
    if not isinstance(aliases, dict) or not all(
        isinstance(alias, str) and isinstance(name, str) and name in tensors
        for alias, name in aliases.items()
    ):
        raise CheckpointError(
            f"{path}: corrupt {ALIASES_KEY} metadata: expected a JSON object mapping names "
            "to stored tensors"
        )
    return aliases


def build_metadata(
    config: ModelConfig,
    component: str,
    aliases: Mapping[str, str],
    extra: Mapping[str, str],
    path: Path,
) -> dict[str, str]:
    """The metadata ``save_checkpoint`` writes: ``extra`` plus the ``aiprod.*`` keys."""
    for key, value in extra.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise CheckpointError(
                f"{path}: metadata must map strings to strings; {key!r} maps to "
                f"{type(value).__name__}"
            )
        if key.startswith(RESERVED_PREFIX):
            raise CheckpointError(
                f"{path}: metadata key {key!r} is reserved (keys starting with "
                f"{RESERVED_PREFIX!r} are written by aiprod)"
            )
    header = dict(extra)
    header[CONFIG_KEY] = config.model_dump_json()
    header[FORMAT_KEY] = FORMAT_VERSION
    header[COMPONENT_KEY] = component
    if aliases:
        header[ALIASES_KEY] = json.dumps(dict(aliases), sort_keys=True)
    return header
