"""Two training processes (torchrun, DDP over gloo on CPU): both end with the same weights,
the loss goes down, only rank 0 writes, and the result matches one process with the same
global batch."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import safetensors.torch
import torch

from aiprod_trainer.config import load_train_config
from aiprod_trainer.training.run_log import read_metrics
from aiprod_trainer.training.state import list_checkpoints
from aiprod_trainer.training.trainer import Trainer

pytestmark = pytest.mark.integration

WORKER = """
import faulthandler, json, sys
from pathlib import Path

import safetensors.torch

from aiprod_trainer.config import load_train_config
from aiprod_trainer.training.distributed import init_distributed, shutdown_distributed
from aiprod_trainer.training.trainer import Trainer

faulthandler.enable()  # a process that aborts shows where
config = load_train_config(sys.argv[1])
context = init_distributed("cpu")
trainer = Trainer(config, context=context)
result = trainer.fit()
out = Path(sys.argv[2])
state = {k: v.contiguous() for k, v in trainer.parts.trained.state_dict().items()}
safetensors.torch.save_file(state, out / f"rank{context.rank}.safetensors")
summary = {"losses": result.losses, "validation": result.validation, "world": context.world_size}
(out / f"rank{context.rank}.json").write_text(json.dumps(summary))
del trainer  # as aiprod-train: the model goes before the process group
shutdown_distributed(synchronize=True)
"""

CHANGES = {
    "data": {"validation_cache": "cache", "batch_size": 2},
    "optimizer": {"lr": 3.0e-3},
    "training": {"max_steps": 12, "text_dropout": 0.0},
    "checkpoints": {"every": 6},
    "validation": {"every": 12, "at_start": True, "max_items": 4},
}


def test_two_processes_train_in_lockstep(
    latent_cache: Path, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    config_path = write_config(CHANGES)
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER, encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(worker), str(config_path), str(out),
    ]  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert finished.returncode == 0, finished.stderr[-3000:]

    ranks = [safetensors.torch.load_file(out / f"rank{rank}.safetensors") for rank in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys()
    assert all(torch.equal(ranks[0][name], ranks[1][name]) for name in ranks[0])
    summaries = [json.loads((out / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert summaries[0]["world"] == 2
    assert summaries[0]["losses"] == summaries[1]["losses"]  # averaged over both ranks
    (_, before), (_, after) = summaries[0]["validation"]
    assert summaries[1]["validation"] == summaries[0]["validation"]
    assert after < 0.8 * before

    run_dir = config_path.parent / "run"
    assert [step for step, _ in list_checkpoints(run_dir)] == [6, 12]
    logged = [e["step"] for e in read_metrics(run_dir / "metrics.jsonl") if "loss" in e]
    assert logged == [2, 4, 6, 8, 10, 12]  # one writer
    assert (run_dir / "model.safetensors").is_file()

    # One process with the same global batch (4 items) takes the same steps.
    single = load_train_config(
        write_config({**CHANGES, "run_dir": "single", "data": {"batch_size": 4}}, "single.yaml")
    )
    trainer = Trainer(single)
    trainer.fit()
    for name, tensor in trainer.parts.trained.state_dict().items():
        torch.testing.assert_close(ranks[0][name], tensor, rtol=1e-4, atol=1e-5)
