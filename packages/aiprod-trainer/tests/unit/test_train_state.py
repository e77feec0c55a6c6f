"""Checkpointed training state: a full round trip, the folder's life cycle, and refusals."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from aiprod_core.models import get_preset
from aiprod_trainer.training.ema import ExponentialMovingAverage
from aiprod_trainer.training.state import (
    ResumeError,
    TrainingSnapshot,
    _join_optimizer,
    _split_optimizer,
    capture_rng,
    checkpoint_dir,
    latest_checkpoint,
    list_checkpoints,
    load_training_state,
    prune_checkpoints,
    remove_partial_checkpoints,
    restore_rng,
    save_training_state,
)

TINY = get_preset("tiny")


def parts(
    seed: int = 0, freeze_bias: bool = False
) -> tuple[nn.Module, torch.optim.Optimizer, ExponentialMovingAverage]:
    torch.manual_seed(seed)
    module = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    if freeze_bias:
        module[1].bias.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=0.01)
    return module, optimizer, ExponentialMovingAverage(module, 0.9)


def train(
    module: nn.Module, optimizer: torch.optim.Optimizer, ema: ExponentialMovingAverage, steps: int
) -> None:
    for step in range(steps):
        x = torch.full((2, 4), float(step + 1))
        optimizer.zero_grad()
        module(x).square().mean().backward()
        optimizer.step()
        ema.update(module)


def snapshot(step: int) -> TrainingSnapshot:
    return TrainingSnapshot(
        step=step,
        data={"epoch": 0, "index": step},
        schedule={"kind": "warmup_cosine"},
        settings={"mode": "dit"},
        rng=[capture_rng()],
        metrics={"loss": 0.5},
    )


def save(
    run_dir: Path,
    step: int,
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    ema: ExponentialMovingAverage | None,
    trainable_only: bool = False,
    saved: TrainingSnapshot | None = None,
) -> Path:
    return save_training_state(
        run_dir,
        saved or snapshot(step),
        module=module,
        component="transformer",
        model_config=TINY,
        trainable_only=trainable_only,
        optimizer=optimizer,
        ema=ema,
    )


@pytest.mark.parametrize("trainable_only", [False, True])
def test_round_trip_continues_identically(tmp_path: Path, trainable_only: bool) -> None:
    module, optimizer, ema = parts(freeze_bias=trainable_only)
    train(module, optimizer, ema, 3)
    saved = snapshot(3)
    folder = save(tmp_path, 3, module, optimizer, ema, trainable_only, saved)
    assert folder == checkpoint_dir(tmp_path, 3) == tmp_path / "checkpoints" / "step-00000003"
    assert sorted(p.name for p in folder.iterdir()) == [
        "ema.safetensors", "ema.safetensors.sha256", "model.safetensors",
        "model.safetensors.sha256", "optimizer.safetensors", "optimizer.safetensors.sha256",
        "rng.safetensors", "rng.safetensors.sha256", "state.json",
    ]  # fmt: skip

    restored, restored_optimizer, restored_ema = parts(seed=1, freeze_bias=trainable_only)
    if trainable_only:  # frozen weights come from the base model, not the checkpoint
        restored[1].bias.data.copy_(module[1].bias.data)
    loaded = load_training_state(
        folder, module=restored, optimizer=restored_optimizer, ema=restored_ema
    )
    assert (loaded.step, loaded.data, loaded.settings, loaded.metrics) == (
        3, {"epoch": 0, "index": 3}, {"mode": "dit"}, {"loss": 0.5},
    )  # fmt: skip
    assert loaded.schedule == {"kind": "warmup_cosine"}
    assert len(loaded.rng) == 1
    assert loaded.rng[0]["python"][1] == list(saved.rng[0]["python"][1])
    for name, tensor in saved.rng[0]["tensors"].items():
        assert torch.equal(loaded.rng[0]["tensors"][name], tensor), name

    train(module, optimizer, ema, 2)
    train(restored, restored_optimizer, restored_ema, 2)
    for (name, a), b in zip(
        module.state_dict().items(), restored.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    assert all(torch.equal(ema.shadow[n], restored_ema.shadow[n]) for n in ema.shadow)
    assert restored_optimizer.param_groups[0]["betas"] == (0.9, 0.999)


def test_rng_capture_and_restore() -> None:
    state = capture_rng()
    first = (random.random(), np.random.rand(), torch.rand(1))
    random.random(), np.random.rand(), torch.rand(1)
    restore_rng(
        json.loads(json.dumps({k: v for k, v in state.items() if k != "tensors"}))
        | {"tensors": state["tensors"]}
    )
    assert (random.random(), np.random.rand(), torch.rand(1)) == first


def test_listing_pruning_and_partial_folders(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path) is None
    assert list_checkpoints(tmp_path) == []
    assert remove_partial_checkpoints(tmp_path) == []
    module, optimizer, _ = parts()
    for step in (2, 4, 6):
        save(tmp_path, step, module, optimizer, None)
    partial = tmp_path / "checkpoints" / ".step-00000008.0a1b2c3d4e5f.tmp"
    partial.mkdir()
    (tmp_path / "checkpoints" / "step-00000010").mkdir()  # no state.json: not finished
    assert [step for step, _ in list_checkpoints(tmp_path)] == [2, 4, 6]
    assert latest_checkpoint(tmp_path) == checkpoint_dir(tmp_path, 6)

    assert remove_partial_checkpoints(tmp_path) == [partial]
    assert not partial.exists()
    assert prune_checkpoints(tmp_path, keep_last=2) == [checkpoint_dir(tmp_path, 2)]
    assert [step for step, _ in list_checkpoints(tmp_path)] == [4, 6]
    save(tmp_path, 6, module, optimizer, None)  # writing the same step again replaces it
    assert [step for step, _ in list_checkpoints(tmp_path)] == [4, 6]


def test_refusals(tmp_path: Path) -> None:
    module, optimizer, ema = parts()
    folder = save(tmp_path, 1, module, optimizer, ema)
    with pytest.raises(ResumeError) as error:
        load_training_state(folder, module=module, optimizer=optimizer, ema=None)
    assert str(error.value) == (
        f"{folder}: was written with EMA on; the config now has ema.enabled false"
    )
    plain = save(tmp_path / "plain", 1, module, optimizer, None)
    with pytest.raises(
        ResumeError, match=r"was written with EMA off; the config now has ema\.enabled true"
    ):
        load_training_state(plain, module=module, optimizer=optimizer, ema=ema)

    other = nn.Linear(4, 3)
    with pytest.raises(
        ResumeError, match=r"does not fit the model being trained \(missing \['bias'"
    ):
        load_training_state(plain, module=other, optimizer=optimizer, ema=None)

    (plain / "optimizer.safetensors").write_bytes(
        (plain / "optimizer.safetensors").read_bytes()[:-4] + b"abcd"
    )
    with pytest.raises(
        ResumeError, match=r"cannot resume from this checkpoint: .*optimizer.safetensors"
    ):
        load_training_state(plain, module=module, optimizer=optimizer, ema=None)

    (plain / "state.json").write_text("{")
    with pytest.raises(ResumeError, match=r"state.json: invalid JSON at line 1"):
        load_training_state(plain, module=module, optimizer=optimizer, ema=None)
    (plain / "state.json").write_text('{"format": 99}')
    with pytest.raises(ResumeError, match=r"state.json: expected a training state of format 1"):
        load_training_state(plain, module=module, optimizer=optimizer, ema=None)


def test_optimizer_state_with_plain_values_round_trips() -> None:
    state = {
        "state": {0: {"exp_avg": torch.ones(2), "step": 3, "flag": True}},
        "param_groups": [{"lr": 0.1, "betas": (0.8, 0.9), "params": [0]}],
    }
    tensors, rest = _split_optimizer(state)
    assert list(tensors) == ["state.0.exp_avg"]
    restored = _join_optimizer(tensors, json.loads(json.dumps(rest)))
    assert restored["state"][0]["step"] == 3
    assert restored["state"][0]["flag"] is True
    assert restored["param_groups"] == [{"lr": 0.1, "betas": (0.8, 0.9), "params": [0]}]
