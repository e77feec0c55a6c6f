"""FSDP2 over gloo on CPU (two torchrun processes): it trains like DDP from the same weights,
a run killed with SIGKILL and resumed ends bit-identical to one that never stopped, LoRA
trains on a bfloat16 base, and a sharded checkpoint consolidates into an inference bundle."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from aiprod_core.checkpoints import load_model, read_checkpoint
from aiprod_trainer.config import load_train_config
from aiprod_trainer.training.consolidation import consolidate_run
from aiprod_trainer.training.distributed import shutdown_distributed
from aiprod_trainer.training.state import ResumeError, list_checkpoints
from aiprod_trainer.training.trainer import Trainer

pytestmark = pytest.mark.integration

# A rank that reaches PAUSE_AT_STEP (after writing that step's checkpoint) writes its pid
# and sleeps, so the test can kill the run at a known point. torchrun starts each worker in
# its own session, so the test kills the workers and torchrun one by one (as a node that
# dies takes all of them).
WORKER = """
import faulthandler, json, os, sys, time
from pathlib import Path

from aiprod_trainer.config import load_train_config
from aiprod_trainer.training.distributed import init_distributed, shutdown_distributed
from aiprod_trainer.training.trainer import Trainer

faulthandler.enable()  # a process that aborts shows where
config = load_train_config(sys.argv[1])
context = init_distributed("cpu")
trainer = Trainer(config, context=context, resume="--resume" in sys.argv)
pause = int(os.environ.get("PAUSE_AT_STEP", "0"))
checkpoint = trainer._checkpoint

def checkpoint_then_pause(step, result):
    checkpoint(step, result)
    if step == pause:
        Path(sys.argv[2], f"paused{context.rank}").write_text(str(os.getpid()))
        time.sleep(600)

trainer._checkpoint = checkpoint_then_pause
result = trainer.fit()
summary = {"losses": result.losses, "validation": result.validation}
Path(sys.argv[2], f"rank{context.rank}.json").write_text(json.dumps(summary))
del trainer, checkpoint  # as aiprod-train: the model goes before the process group
shutdown_distributed(synchronize=True)
"""

CHANGES = {
    "data": {"validation_cache": "cache", "batch_size": 1},
    "optimizer": {"lr": 3.0e-3},
    "training": {"max_steps": 16, "text_dropout": 0.0},
    "checkpoints": {"every": 4, "keep_last": 5},
    "validation": {"every": 16, "at_start": True, "max_items": 3},
    "distributed": {"strategy": "fsdp", "param_dtype": "float32"},
}


def _torchrun(worker: Path, config: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(worker), str(config), str(out), *extra,
    ]  # fmt: skip


def _run(command: list[str], env: dict[str, str] | None = None) -> None:
    finished = subprocess.run(
        command, capture_output=True, text=True, timeout=240, check=False, env=env
    )
    assert finished.returncode == 0, finished.stderr[-4000:]


def _transformer(run_dir: Path) -> dict[str, torch.Tensor]:
    tensors = read_checkpoint(run_dir / "model.safetensors").tensors
    return {k: v for k, v in tensors.items() if k.startswith("transformer.")}


@pytest.fixture
def worker(tmp_path: Path) -> Path:
    path = tmp_path / "worker.py"
    path.write_text(WORKER, encoding="utf-8")
    return path


def test_fsdp_matches_ddp_resumes_exactly_and_consolidates(
    latent_cache: Path, write_config: Callable[..., Path], worker: Path, tmp_path: Path
) -> None:
    fsdp_config = write_config(CHANGES)
    out = tmp_path / "out"
    out.mkdir()
    _run(_torchrun(worker, fsdp_config, out))
    fsdp_run = fsdp_config.parent / "run"
    summaries = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert summaries[0]["losses"] == summaries[1]["losses"]
    (_, before), (_, after) = summaries[0]["validation"]
    assert after < 0.8 * before
    assert [step for step, _ in list_checkpoints(fsdp_run)] == [4, 8, 12, 16]
    shards = sorted(p.name for p in (fsdp_run / "checkpoints/step-00000016/shards").iterdir())
    assert shards == [".metadata", "__0_0.distcp", "__1_0.distcp"]

    # DDP from the same seed (so the same initial weights) and data: the same weights
    # within float32 reduction-order noise.
    ddp_config = write_config(
        {**CHANGES, "run_dir": "ddp", "distributed": {"strategy": "ddp"}}, "ddp.yaml"
    )
    _run(_torchrun(worker, ddp_config, out))
    fsdp_weights, ddp_weights = _transformer(fsdp_run), _transformer(fsdp_config.parent / "ddp")
    assert fsdp_weights.keys() == ddp_weights.keys()
    for name, tensor in fsdp_weights.items():
        torch.testing.assert_close(tensor, ddp_weights[name], rtol=1e-4, atol=2e-5)

    # Killed with SIGKILL while paused after checkpoint 8, then resumed: bit-identical.
    killed_config = write_config({**CHANGES, "run_dir": "killed"}, "killed.yaml")
    killed_out = tmp_path / "killed-out"
    killed_out.mkdir()
    env = {**os.environ, "PAUSE_AT_STEP": "8"}
    log = tmp_path / "killed.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            _torchrun(worker, killed_config, killed_out),
            env=env,
            start_new_session=True,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 180
    paused = [killed_out / f"paused{rank}" for rank in (0, 1)]
    while not all(path.exists() for path in paused):
        assert process.poll() is None, (
            process.stderr.read().decode()[-3000:] if process.stderr else ""
        )
        assert time.monotonic() < deadline, "the run never reached step 8"
        time.sleep(0.1)
    time.sleep(0.2)  # both pids are written in full
    for path in paused:
        os.kill(int(path.read_text()), signal.SIGKILL)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    killed_run = killed_config.parent / "killed"
    assert [step for step, _ in list_checkpoints(killed_run)] == [4, 8]
    assert not (killed_run / "model.safetensors").exists()
    _run(_torchrun(worker, killed_config, killed_out, "--resume"))
    resumed = _transformer(killed_run)
    assert all(torch.equal(resumed[name], fsdp_weights[name]) for name in fsdp_weights)

    # The last sharded checkpoint, consolidated, is the exported model.
    bundle = consolidate_run(fsdp_run, tmp_path / "consolidated.safetensors")
    model, config = load_model(bundle)
    assert config.preset == "tiny"
    for name, tensor in model.transformer.state_dict().items():
        assert torch.equal(tensor, fsdp_weights[f"transformer.{name}"]), name


def test_lora_under_fsdp_keeps_a_bfloat16_base(
    latent_cache: Path, write_config: Callable[..., Path], worker: Path, tmp_path: Path
) -> None:
    config_path = write_config(
        {
            **CHANGES,
            "mode": "lora",
            "training": {"max_steps": 6, "text_dropout": 0.0},
            "checkpoints": {"every": 3, "keep_last": 2},
            "validation": {"every": 0, "at_start": False},
            "distributed": {"strategy": "fsdp", "param_dtype": "bfloat16"},
        }
    )
    out = tmp_path / "out"
    out.mkdir()
    _run(_torchrun(worker, config_path, out))
    run_dir = config_path.parent / "run"
    losses = json.loads((out / "rank0.json").read_text())["losses"]
    assert len(losses) == 6
    assert all(0 < loss < 10 for _, loss in losses)
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    state = json.loads((run_dir / "checkpoints/step-00000006/state.json").read_text())
    assert state["trainable_only"]
    assert state["sharded"]["world_size"] == 2
    merged = _transformer(run_dir)
    assert all(t.dtype == torch.float32 for t in merged.values())
    assert not any("lora_" in name for name in merged)


def test_resume_refuses_another_world_size(
    latent_cache: Path, write_config: Callable[..., Path], worker: Path, tmp_path: Path
) -> None:
    config_path = write_config({**CHANGES, "training": {"max_steps": 4, "text_dropout": 0.0}})
    out = tmp_path / "out"
    out.mkdir()
    _run(_torchrun(worker, config_path, out))
    try:
        with pytest.raises(ResumeError, match="written by 2 processes and this run has 1"):
            Trainer(load_train_config(config_path), resume=True)
    finally:
        shutdown_distributed()  # the single process joined a world of one
