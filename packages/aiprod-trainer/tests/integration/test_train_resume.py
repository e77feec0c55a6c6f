"""Resuming continues exactly: a run stopped (cleanly, or killed with SIGKILL) and resumed
from its last checkpoint ends with the same bits as a run that never stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from aiprod_core.checkpoints import read_checkpoint
from aiprod_trainer.config import load_train_config
from aiprod_trainer.training.run_log import read_metrics
from aiprod_trainer.training.run_setup import TrainingError
from aiprod_trainer.training.state import latest_checkpoint, list_checkpoints
from aiprod_trainer.training.trainer import Trainer

pytestmark = pytest.mark.integration

RESUMABLE = {
    "data": {"validation_cache": "cache"},
    "training": {"max_steps": 10, "text_dropout": 0.3},
    "ema": {"enabled": True, "decay": 0.9},
    "checkpoints": {"every": 3, "keep_last": 2},
    "validation": {"every": 5, "at_start": True, "max_items": 2},
}


def final_tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(run_dir / "model.safetensors").tensors


def assert_same_tensors(left: dict[str, torch.Tensor], right: dict[str, torch.Tensor]) -> None:
    assert left.keys() == right.keys()
    different = [name for name in left if not torch.equal(left[name], right[name])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def reference_run(write_config: Callable[..., Path], changes: dict) -> Path:
    path = write_config({**changes, "run_dir": "reference"}, name="reference.yaml")
    result = Trainer(load_train_config(path)).fit()
    assert result.completed
    return result.run_dir


def test_clean_stop_and_resume_is_bit_identical(
    latent_cache: Path, write_config: Callable[..., Path]
) -> None:
    reference = reference_run(write_config, RESUMABLE)
    config = load_train_config(write_config(RESUMABLE))

    first = Trainer(config).fit(stop_at_step=4)
    assert (first.step, first.completed, first.final_model) == (4, False, None)
    assert [step for step, _ in list_checkpoints(config.run_dir)] == [3, 4]
    assert not (config.run_dir / "model.safetensors").exists()

    resumed = Trainer(config, resume=True)
    assert resumed.start_step == 4
    second = resumed.fit()
    assert second.completed
    assert second.step == 10
    assert [step for step, _ in second.losses] == list(range(5, 11))

    assert_same_tensors(final_tensors(config.run_dir), final_tensors(reference))
    last = "checkpoints/step-00000010/optimizer.safetensors"
    assert_same_tensors(
        read_checkpoint(config.run_dir / last).tensors, read_checkpoint(reference / last).tensors
    )
    steps = [
        (e["step"], "validation_loss" in e) for e in read_metrics(config.run_dir / "metrics.jsonl")
    ]
    expected = [
        (e["step"], "validation_loss" in e) for e in read_metrics(reference / "metrics.jsonl")
    ]
    assert steps == expected


@pytest.mark.fault("interrupted", guards_data=True)
def test_sigkill_mid_run_then_resume_is_bit_identical(
    latent_cache: Path, write_config: Callable[..., Path]
) -> None:
    changes = {
        **RESUMABLE,
        "training": {"max_steps": 120, "text_dropout": 0.3},
        "checkpoints": {"every": 5, "keep_last": 3},
        "validation": {"every": 0, "at_start": False},
    }
    reference = reference_run(write_config, changes)
    path = write_config(changes)
    run_dir = path.parent / "run"
    command = [sys.executable, "-m", "aiprod_trainer.cli", str(path), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}

    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while latest_checkpoint(run_dir) is None and process.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.002)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (run_dir / "model.safetensors").exists()
    killed_at = list_checkpoints(run_dir)[-1][0]
    assert killed_at < 120

    finished = subprocess.run(
        [*command, "--resume"], env=env, capture_output=True, text=True, check=False
    )
    assert finished.returncode == 0, finished.stderr
    assert f"final model: {run_dir / 'model.safetensors'}" in finished.stdout
    assert_same_tensors(final_tensors(run_dir), final_tensors(reference))


def test_existing_checkpoints_need_resume(
    latent_cache: Path, write_config: Callable[..., Path]
) -> None:
    config = load_train_config(write_config())
    Trainer(config).fit(stop_at_step=4)
    with pytest.raises(TrainingError) as error:
        Trainer(config)
    assert str(error.value) == (
        f"{config.run_dir}: already holds checkpoints (latest step-00000004); pass --resume "
        "to continue that run, or choose another run_dir"
    )


def test_resume_refuses_changed_batch_settings(
    latent_cache: Path, write_config: Callable[..., Path]
) -> None:
    Trainer(load_train_config(write_config())).fit(stop_at_step=4)
    changed = load_train_config(write_config({"data": {"batch_size": 1}}))
    with pytest.raises(TrainingError) as error:
        Trainer(changed, resume=True)
    folder = changed.run_dir / "checkpoints" / "step-00000004"
    assert str(error.value) == (
        f"{folder}: cannot resume: batch_size was 2 when this checkpoint was written, the run "
        "now has 1; restore the setting or start a new run_dir"
    )
