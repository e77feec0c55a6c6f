"""Resumable training state: everything a run needs to continue exactly where it stopped.

A checkpoint is a folder ``<run_dir>/checkpoints/step-00000100/``::

    model.safetensors      the trained weights (the whole component, or only the LoRA
                           adapters), with the model config in the metadata
    ema.safetensors        the EMA averages, when EMA is on
    optimizer.safetensors  the optimizer's tensors (AdamW moments and step counts)
    rng.safetensors        each rank's torch (and CUDA) generator state and numpy keys
    state.json             step, data position, LR schedule, optimizer hyper-parameters,
                           python/numpy RNG scalars and the run's settings

Every ``.safetensors`` file goes through aiprod_core's atomic writer with a sha256 sidecar
and is verified when read; nothing is unpickled. The folder itself is written as a
temporary folder and renamed into place, so a run killed at any moment leaves either the
whole checkpoint or none of it, and the previous ones intact. What such a kill leaves
behind (temporary folders and files, tens of GB for a large model) is deleted by
:func:`remove_interrupted_writes` when the run is started again.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from torch import nn

from aiprod_core.atomic import (
    RemovedPath,
    atomic_folder,
    atomic_write_text,
    remove_orphans,
)
from aiprod_core.checkpoints import (
    CheckpointError,
    read_checkpoint,
    save_checkpoint,
    write_with_sidecar,
)
from aiprod_core.checkpoints.header import build_metadata
from aiprod_core.documents import read_document
from aiprod_core.errors import AiprodError
from aiprod_core.models import ModelConfig
from aiprod_trainer.training.ema import ExponentialMovingAverage

STATE_FORMAT = 1
CHECKPOINTS_DIR = "checkpoints"
STATE_FILE = "state.json"
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"
_STEP_DIR = re.compile(r"step-(\d{8})")
_CHECKPOINT_FILES = re.compile(r"(state\.json|shards|\w+\.safetensors(\.sha256)?)")


class ResumeError(AiprodError, ValueError):
    """A checkpoint cannot be resumed (corrupt, or written by a different kind of run)."""


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    """``<run_dir>/checkpoints/step-<8 digits>``."""
    return Path(run_dir) / CHECKPOINTS_DIR / f"step-{step:08d}"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Finished checkpoints of a run as (step, folder), oldest first."""
    folder = Path(run_dir) / CHECKPOINTS_DIR
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        match = _STEP_DIR.fullmatch(entry.name)
        if match and (entry / STATE_FILE).is_file():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest finished checkpoint folder of a run, or None."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def remove_partial_checkpoints(run_dir: Path) -> list[Path]:
    """Delete the temporary folders of checkpoints whose writing was interrupted.

    Those are the folders a checkpoint is written into before it is renamed into place,
    and the old folders a rewritten checkpoint moves aside; finished checkpoints stay.

    Raises:
        OSError: one of them cannot be deleted; the message names it.
    """
    return [removed.path for removed in _remove_partial_checkpoints(Path(run_dir))]


def _remove_partial_checkpoints(run_dir: Path) -> list[RemovedPath]:
    return remove_orphans(run_dir / CHECKPOINTS_DIR, _is_checkpoint_name)


def _is_checkpoint_name(name: str) -> bool:
    return _STEP_DIR.fullmatch(name) is not None


def remove_interrupted_writes(
    run_dir: Path, run_files: Collection[str], run_folders: Iterable[Path] = ()
) -> list[RemovedPath]:
    """Delete the temporary files and folders a run killed mid-write left behind.

    Removed: in ``run_dir``, temporary copies of ``run_files`` (the names of the files the
    run writes there, such as ``model.safetensors`` and its ``.sha256`` sidecar); in
    ``checkpoints/``, unfinished checkpoint folders (see
    :func:`remove_partial_checkpoints`); and in each of ``run_folders`` (folders only the
    run writes into, such as its adapter folder), every temporary file or folder. Files
    that are not the run's, hidden or not, stay. Call it from one process per run, before
    it writes anything.

    Returns:
        What was deleted and the bytes each freed, in that order.

    Raises:
        OSError: something cannot be listed or deleted; the message names it.
    """
    run_dir = Path(run_dir)
    removed = remove_orphans(run_dir, run_files)
    removed.extend(_remove_partial_checkpoints(run_dir))
    for folder in run_folders:
        removed.extend(remove_orphans(folder, lambda _name: True))
    return removed


def prune_checkpoints(run_dir: Path, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints; returns the deleted folders."""
    found = list_checkpoints(run_dir)
    doomed = [path for _, path in found[: max(0, len(found) - keep_last)]]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


# --- random number generators ------------------------------------------------------------


def capture_rng() -> dict[str, Any]:
    """This process's python, numpy, torch and CUDA generator states (JSON + tensors)."""
    version, internal, gauss = random.getstate()
    numpy_state = np.random.get_state()
    # numpy's global generator is MT19937, whose legacy state is a tuple (not a dict).
    assert isinstance(numpy_state, tuple)
    kind, keys, pos, has_gauss, cached = numpy_state
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": {"kind": kind, "pos": int(pos), "has_gauss": int(has_gauss), "cached": cached},
        "tensors": {
            "torch": torch.get_rng_state(),
            "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            state["tensors"][f"cuda{index}"] = cuda_state
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Put back the generator states :func:`capture_rng` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = state["numpy"]
    keys = state["tensors"]["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state((numpy["kind"], keys, numpy["pos"], numpy["has_gauss"], numpy["cached"]))
    torch.set_rng_state(state["tensors"]["torch"])
    cuda = [state["tensors"][f"cuda{i}"] for i in range(_cuda_states(state["tensors"]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])


def _cuda_states(tensors: Mapping[str, torch.Tensor]) -> int:
    return sum(1 for name in tensors if name.startswith("cuda"))


# --- saving and loading -------------------------------------------------------------------


@dataclass
class TrainingSnapshot:
    """What a checkpoint holds besides the model: counters, settings and RNG states."""

    step: int
    data: dict[str, Any]
    schedule: dict[str, Any]
    settings: dict[str, Any]
    rng: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)


def trained_tensors(module: nn.Module, trainable_only: bool) -> dict[str, torch.Tensor]:
    """The tensors a checkpoint stores for ``module``: all, or only the trainable ones."""
    if not trainable_only:
        return dict(module.state_dict())
    return {name: p.detach() for name, p in module.named_parameters() if p.requires_grad}


def save_training_state(
    run_dir: Path,
    snapshot: TrainingSnapshot,
    *,
    module: nn.Module,
    component: str,
    model_config: ModelConfig,
    trainable_only: bool,
    optimizer: torch.optim.Optimizer,
    ema: ExponentialMovingAverage | None,
) -> Path:
    """Write checkpoint ``snapshot.step`` atomically and return its folder.

    ``module`` is the trained component (``component`` names it: ``"transformer"`` or
    ``"vae"``); with ``trainable_only`` only its trainable parameters (LoRA adapters) are
    stored. ``snapshot.rng`` holds one :func:`capture_rng` result per rank.
    """
    target = checkpoint_dir(run_dir, snapshot.step)
    with atomic_folder(target, is_checkpoint_file, replaceable_name="checkpoint files") as temp:
        if trainable_only:
            tensors = trained_tensors(module, trainable_only=True)
            write_tensors(temp / MODEL_FILE, tensors, model_config, f"{component}.lora")
        else:
            save_checkpoint(module, model_config, temp / MODEL_FILE, component=component)
        if ema is not None:
            write_tensors(temp / EMA_FILE, ema.state_dict(), model_config, f"{component}.ema")
        optimizer_tensors, optimizer_json = _split_optimizer(optimizer.state_dict())
        write_tensors(temp / OPTIMIZER_FILE, optimizer_tensors, model_config, "optimizer")
        write_rng(temp, snapshot, model_config)
        state = state_document(snapshot, component, trainable_only, ema is not None)
        state["optimizer"] = optimizer_json
        write_state(temp, state)
    return target


def write_rng(folder: Path, snapshot: TrainingSnapshot, model_config: ModelConfig) -> None:
    """Every rank's generator tensors (``snapshot.rng``) as ``folder/rng.safetensors``."""
    rng_tensors = {
        f"rank{rank}.{name}": tensor
        for rank, state in enumerate(snapshot.rng)
        for name, tensor in state["tensors"].items()
    }
    write_tensors(folder / RNG_FILE, rng_tensors, model_config, "rng")


def read_rng(folder: Path, scalars: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The per-rank generator states :func:`write_rng` and ``state.json`` hold."""
    rng_tensors = read_checkpoint(folder / RNG_FILE).tensors
    rng = []
    for rank, values in enumerate(scalars):
        prefix = f"rank{rank}."
        tensors = {k[len(prefix) :]: v for k, v in rng_tensors.items() if k.startswith(prefix)}
        rng.append({**values, "tensors": tensors})
    return rng


def state_document(
    snapshot: TrainingSnapshot, component: str, trainable_only: bool, ema: bool
) -> dict[str, Any]:
    """The ``state.json`` of a checkpoint (without the optimizer's part)."""
    return {
        "format": STATE_FORMAT,
        "step": snapshot.step,
        "component": component,
        "trainable_only": trainable_only,
        "ema": ema,
        "data": snapshot.data,
        "schedule": snapshot.schedule,
        "settings": snapshot.settings,
        "metrics": snapshot.metrics,
        "rng": [{k: v for k, v in s.items() if k != "tensors"} for s in snapshot.rng],
    }


def write_state(folder: Path, state: Mapping[str, Any]) -> None:
    """``folder/state.json``, written last: a folder without it is not a checkpoint."""
    atomic_write_text(folder / STATE_FILE, json.dumps(state, indent=2, sort_keys=True) + "\n")


def snapshot_of(state: Mapping[str, Any], rng: list[dict[str, Any]]) -> TrainingSnapshot:
    """The :class:`TrainingSnapshot` a ``state.json`` and its generator states describe."""
    return TrainingSnapshot(
        step=state["step"],
        data=state["data"],
        schedule=state["schedule"],
        settings=state["settings"],
        rng=rng,
        metrics=state["metrics"],
    )


def check_ema(folder: Path, state: Mapping[str, Any], ema: object | None) -> None:
    """A ResumeError when the checkpoint's EMA setting differs from the run's."""
    if state["ema"] != (ema is not None):
        raise ResumeError(
            f"{folder}: was written with EMA {'on' if state['ema'] else 'off'}; the config now "
            f"has ema.enabled {'true' if ema is not None else 'false'}"
        )


def load_training_state(
    folder: Path,
    *,
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    ema: ExponentialMovingAverage | None,
) -> TrainingSnapshot:
    """Load checkpoint ``folder`` into ``module``, ``optimizer`` and ``ema``; return the rest.

    Every file's sha256 is verified; a corrupt or mismatching checkpoint raises ResumeError
    naming the file.
    """
    folder = Path(folder)
    state = read_state(folder / STATE_FILE)
    check_ema(folder, state, ema)
    if state.get("sharded"):
        raise ResumeError(
            f"{folder}: holds FSDP shards (distributed.strategy fsdp); resume it with "
            "distributed.strategy: fsdp on the same number of processes"
        )
    try:
        weights = read_checkpoint(folder / MODEL_FILE).tensors
        _load_weights(module, weights, state["trainable_only"], folder / MODEL_FILE)
        if ema is not None:
            ema.load_state_dict(read_checkpoint(folder / EMA_FILE).tensors)
        optimizer_tensors = read_checkpoint(folder / OPTIMIZER_FILE).tensors
        optimizer.load_state_dict(_join_optimizer(optimizer_tensors, state["optimizer"]))
        rng = read_rng(folder, state["rng"])
    except (CheckpointError, KeyError, ValueError) as exc:
        raise ResumeError(f"{folder}: cannot resume from this checkpoint: {exc}") from None
    return snapshot_of(state, rng)


def is_checkpoint_file(entry: Path) -> bool:
    return _CHECKPOINT_FILES.fullmatch(entry.name) is not None


def read_state(path: Path) -> dict[str, Any]:
    state = read_document(path, "json", error=ResumeError)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ResumeError(f"{path}: expected a training state of format {STATE_FORMAT}")
    return state


def write_tensors(
    path: Path, tensors: Mapping[str, torch.Tensor], config: ModelConfig, component: str
) -> None:
    """Tensors as a checkpoint file (config metadata, atomic write, sha256 sidecar)."""
    header = build_metadata(config, component, {}, {}, path)
    stored = {name: t.detach().contiguous() for name, t in tensors.items()}
    write_with_sidecar(
        path, lambda temp: safetensors.torch.save_file(stored, temp, metadata=header)
    )


def _load_weights(
    module: nn.Module, tensors: Mapping[str, torch.Tensor], trainable_only: bool, path: Path
) -> None:
    expected = trained_tensors(module, trainable_only)
    missing = sorted(expected.keys() - tensors.keys())
    unexpected = sorted(tensors.keys() - expected.keys())
    if missing or unexpected:
        raise ResumeError(
            f"{path}: does not fit the model being trained (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
    with torch.no_grad():
        for name, target in expected.items():
            target.copy_(tensors[name])


def _split_optimizer(state: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimizer state dict as (tensors by ``state.<param>.<key>``, everything else)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    groups = [
        {k: list(v) if isinstance(v, tuple) else v for k, v in group.items()}
        for group in state["param_groups"]
    ]
    return tensors, {"param_groups": groups, "scalars": scalars}


def _join_optimizer(
    tensors: Mapping[str, torch.Tensor], saved: Mapping[str, Any]
) -> dict[str, Any]:
    """The inverse of :func:`_split_optimizer`."""
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = tensor
    for index, values in saved["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    groups = [
        {k: tuple(v) if k == "betas" else v for k, v in group.items()}
        for group in saved["param_groups"]
    ]
    return {"state": state, "param_groups": groups}
