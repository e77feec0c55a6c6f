"""Checkpoints: safetensors files that carry their model's config and are verified on load.

    save_checkpoint(model, config, path)        atomic write + ``<path>.sha256`` sidecar
    load_model(path) -> (AiprodModel, config)   rebuilt on the meta device from the stored
                                                config, then the weights are moved in
    load_component(path) -> (module, config)    the same for a transformer, VAE, ... file
    inspect_checkpoint(path) -> CheckpointInfo  header only: config, component, shapes
    read_checkpoint(path) -> Checkpoint         config and tensors, no module
    write_with_sidecar(path, write) -> sha256   any file written atomically + its sidecar

Reading verifies the file's sha256: the one the caller gives, else its sidecar's. A file
with neither is read unverified, and a warning (logger ``aiprod_core.checkpoints``, once
per file and process) names it and how to record its digest.

Every problem a user can cause (missing, truncated, corrupt, pickle, mismatched files) is
a ``CheckpointError`` whose message names the file.
"""

from aiprod_core.checkpoints.digest import (
    file_sha256,
    read_sidecar,
    sidecar_path,
    verify_sha256,
    warn_unverified,
    write_sidecar,
    write_with_sidecar,
)
from aiprod_core.checkpoints.errors import CheckpointError
from aiprod_core.checkpoints.files import (
    PICKLE_SUFFIXES,
    Checkpoint,
    CheckpointInfo,
    inspect_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from aiprod_core.checkpoints.header import FORMAT_VERSION, TensorInfo
from aiprod_core.checkpoints.loading import (
    COMPONENTS,
    check_config,
    config_differences,
    load_component,
    load_model,
)

__all__ = [
    "COMPONENTS",
    "FORMAT_VERSION",
    "PICKLE_SUFFIXES",
    "Checkpoint",
    "CheckpointError",
    "CheckpointInfo",
    "TensorInfo",
    "check_config",
    "config_differences",
    "file_sha256",
    "inspect_checkpoint",
    "load_component",
    "load_model",
    "read_checkpoint",
    "read_sidecar",
    "save_checkpoint",
    "sidecar_path",
    "verify_sha256",
    "warn_unverified",
    "write_sidecar",
    "write_with_sidecar",
]
