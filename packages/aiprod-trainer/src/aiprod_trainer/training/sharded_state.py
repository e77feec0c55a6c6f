"""Checkpoints of FSDP runs: each process writes its own shards (torch.distributed.checkpoint).

A sharded checkpoint folder ``<run_dir>/checkpoints/step-00000100/`` holds::

    shards/            DCP's files: ``.metadata`` and one ``__<rank>_0.distcp`` per process
                       with that rank's shards of the model, optimizer and EMA state
    rng.safetensors    each rank's generator states, as in an unsharded checkpoint
    state.json         as in an unsharded checkpoint, plus ``sharded``: the world size and
                       the sha256 of every file under ``shards/``

It is written like an unsharded one (see :mod:`aiprod_trainer.training.state`): rank 0
creates a temporary folder beside the target and broadcasts its path, every rank writes
its shards into it (a shared filesystem, as multi-node training needs for checkpoints
anyway), each rank hashes the files it wrote, and rank 0 writes ``state.json`` last and
renames the folder into place, so a run killed at any moment leaves the whole checkpoint
or none of it. Resuming needs the same world size (the data order is per rank) and loads
each rank's shards back in place: the run then continues bit-identically on CPU.
:func:`consolidate` turns the shards into one set of plain tensors in a single process,
which ``consolidate_checkpoint`` writes as an inference bundle.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_state_dict,
    set_state_dict,
)

from aiprod_core.atomic import atomic_folder
from aiprod_core.models import ModelConfig
from aiprod_trainer.training.distributed import (
    DistributedContext,
    barrier,
    broadcast_object,
    gather_objects,
)
from aiprod_trainer.training.ema import ExponentialMovingAverage
from aiprod_trainer.training.state import (
    STATE_FILE,
    ResumeError,
    TrainingSnapshot,
    check_ema,
    checkpoint_dir,
    is_checkpoint_file,
    read_rng,
    read_state,
    snapshot_of,
    state_document,
    write_rng,
    write_state,
)

SHARDS_DIR = "shards"
_RANK_FILE = re.compile(r"__(\d+)_\d+\.distcp")
_CHUNK = 1 << 22


def _options(trainable_only: bool, *, strict: bool = True) -> StateDictOptions:
    # LoRA checkpoints hold the adapters only: the frozen base is the run's starting point.
    return StateDictOptions(ignore_frozen_params=trainable_only, strict=strict)


def _state(
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    ema: ExponentialMovingAverage | None,
    trainable_only: bool,
) -> dict[str, Any]:
    model_state, optimizer_state = get_state_dict(
        module, optimizer, options=_options(trainable_only)
    )
    state: dict[str, Any] = {"model": model_state, "optimizer": optimizer_state}
    if ema is not None:
        state["ema"] = ema.shadow
    return state


def save_sharded_state(
    run_dir: Path,
    snapshot: TrainingSnapshot,
    *,
    module: nn.Module,
    component: str,
    model_config: ModelConfig,
    trainable_only: bool,
    optimizer: torch.optim.Optimizer,
    ema: ExponentialMovingAverage | None,
    context: DistributedContext,
) -> Path:
    """Write checkpoint ``snapshot.step`` of a sharded run; collective (every rank calls it).

    ``snapshot.rng`` (one state per rank) is only needed on rank 0.
    """
    target = checkpoint_dir(run_dir, snapshot.step)
    state = _state(module, optimizer, ema, trainable_only)
    if context.is_main:
        with atomic_folder(target, is_checkpoint_file, replaceable_name="checkpoint files") as temp:
            broadcast_object(str(temp), context)
            digests = _write_shards(state, temp / SHARDS_DIR, context)
            write_rng(temp, snapshot, model_config)
            document = state_document(snapshot, component, trainable_only, ema is not None)
            document["sharded"] = {"world_size": context.world_size, "sha256": digests}
            write_state(temp, document)
            barrier(context)
    else:
        temp = Path(broadcast_object(None, context))
        _write_shards(state, temp / SHARDS_DIR, context)
        barrier(context)
    barrier(context)  # the folder is in place before anyone goes on
    return target


def _write_shards(
    state: dict[str, Any], folder: Path, context: DistributedContext
) -> dict[str, str]:
    """Save ``state`` with DCP into ``folder``; every rank hashes its own files and rank 0
    gets all digests (and hashes the metadata)."""
    dcp.save(state, checkpoint_id=folder)
    own = {
        entry.name: _sha256(entry)
        for entry in sorted(folder.iterdir())
        if (match := _RANK_FILE.fullmatch(entry.name)) and int(match.group(1)) == context.rank
    }
    digests: dict[str, str] = {}
    for part in gather_objects(own, context):
        digests.update(part)
    if context.is_main:
        digests[".metadata"] = _sha256(folder / ".metadata")
    return digests


def load_sharded_state(
    folder: Path,
    *,
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    ema: ExponentialMovingAverage | None,
    trainable_only: bool,
    context: DistributedContext,
) -> TrainingSnapshot:
    """Load a sharded checkpoint into ``module``, ``optimizer`` and ``ema``; collective.

    Each rank verifies the files it reads against ``state.json``'s digests first; a
    checkpoint from another world size or an unsharded one raises ResumeError.
    """
    folder = Path(folder)
    document = read_state(folder / STATE_FILE)
    check_ema(folder, document, ema)
    sharded = document.get("sharded")
    if not sharded:
        raise ResumeError(
            f"{folder}: is an unsharded (ddp) checkpoint; resume it with "
            "distributed.strategy: ddp, or start a new run_dir"
        )
    if sharded["world_size"] != context.world_size:
        raise ResumeError(
            f"{folder}: was written by {sharded['world_size']} processes and this run has "
            f"{context.world_size}; resume on {sharded['world_size']} processes, or "
            "consolidate_checkpoint it and start a new run from the consolidated file"
        )
    verify_shards(folder, sharded["sha256"], rank=context.rank)
    state = _state(module, optimizer, ema, trainable_only)
    try:
        dcp.load(state, checkpoint_id=folder / SHARDS_DIR)
        rng = read_rng(folder, document["rng"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ResumeError(f"{folder}: cannot resume from this checkpoint: {exc}") from None
    set_state_dict(
        module,
        optimizer,
        model_state_dict=state["model"],
        optim_state_dict=state["optimizer"],
        options=_options(trainable_only, strict=not trainable_only),
    )
    return snapshot_of(document, rng)


def verify_shards(folder: Path, digests: dict[str, str], rank: int | None = None) -> None:
    """Check the files under ``folder/shards`` against their recorded sha256: all of them,
    or (``rank``) that rank's own files and the metadata. ResumeError names a bad file."""
    shards = folder / SHARDS_DIR
    for name, expected in sorted(digests.items()):
        match = _RANK_FILE.fullmatch(name)
        if rank is not None and match and int(match.group(1)) != rank:
            continue
        path = shards / name
        if not path.is_file():
            raise ResumeError(f"{path}: missing from the sharded checkpoint")
        if _sha256(path) != expected:
            raise ResumeError(
                f"{path}: sha256 does not match the one recorded in {folder / STATE_FILE}; "
                "the file is corrupt: resume from an earlier checkpoint"
            )


def consolidate(folder: Path, targets: dict[str, Any]) -> None:
    """Fill ``targets`` (``{"model": state dict of plain tensors}``) from a sharded
    checkpoint in this single process, verifying every file first."""
    document = read_state(folder / STATE_FILE)
    sharded = document.get("sharded")
    if not sharded:
        raise ResumeError(f"{folder}: is not a sharded checkpoint (no shards/ in it)")
    verify_shards(folder, sharded["sha256"])
    with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
        warnings.filterwarnings("ignore", "torch.distributed is disabled", UserWarning)
        dcp.load(targets, checkpoint_id=folder / SHARDS_DIR, no_dist=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
