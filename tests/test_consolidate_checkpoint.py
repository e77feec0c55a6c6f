"""consolidate_checkpoint writes one loadable bundle from a sharded (FSDP) checkpoint, and
refuses what is not one with a one-line error."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch
import yaml

from aiprod_core.checkpoints import load_model, read_checkpoint
from aiprod_core.models import get_preset
from aiprod_trainer.config import load_train_config
from aiprod_trainer.data.latent_cache import CacheMeta, LatentCacheWriter
from aiprod_trainer.data.manifest import ManifestRecord
from aiprod_trainer.training.distributed import shutdown_distributed
from aiprod_trainer.training.trainer import Trainer

TINY = get_preset("tiny")


@pytest.fixture
def script(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("maintenance/consolidate_checkpoint.py")


def write_cache(folder: Path, items: int = 3) -> Path:
    generator = torch.Generator().manual_seed(0)
    length, dim = TINY.text_encoder.max_length, TINY.text_encoder.dim
    with LatentCacheWriter(folder, CacheMeta("tiny", "builtin"), shard_size=4) as writer:
        for index in range(items):
            record = ManifestRecord(
                media=f"clip-{index}.mp4", caption=f"clip {index}", width=16, height=16,
                frames=5, fps=8,
            )  # fmt: skip
            writer.add(
                f"item-{index}",
                torch.randn(8, 3, 4, 4, generator=generator),
                torch.randn(length, dim, generator=generator),
                torch.ones(length, dtype=torch.bool),
                record,
            )
    return folder


def train(tmp_path: Path, strategy: str) -> Path:
    write_cache(tmp_path / "cache")
    config = {
        "mode": "dit", "run_dir": f"run-{strategy}", "model": {"preset": "tiny"},
        "data": {"cache": "cache", "batch_size": 1},
        "training": {"max_steps": 3, "progress": False},
        "checkpoints": {"every": 3}, "validation": {"at_start": False},
        "distributed": {"strategy": strategy},
    }  # fmt: skip
    path = tmp_path / f"{strategy}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    Trainer(load_train_config(path)).fit()
    return tmp_path / f"run-{strategy}"


@pytest.fixture
def sharded_run(tmp_path: Path) -> Iterator[Path]:
    try:
        yield train(tmp_path, "fsdp")  # one process: a world of one
    finally:
        shutdown_distributed()


def test_consolidated_bundle_is_the_trained_transformer(
    script: ModuleType, sharded_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert script.main([str(sharded_run), "--json"]) == 0
    written = Path(json.loads(capsys.readouterr().out)["bundle"])
    assert written == sharded_run / "consolidated-step-00000003.safetensors"
    assert written.with_name(written.name + ".sha256").is_file()
    model, config = load_model(written)
    assert config.preset == "tiny"
    exported = read_checkpoint(sharded_run / "model.safetensors").tensors
    for name, tensor in model.transformer.state_dict().items():
        assert torch.equal(tensor, exported[f"transformer.{name}"]), name


def test_a_corrupt_shard_is_named(
    script: ModuleType, sharded_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shard = sharded_run / "checkpoints" / "step-00000003" / "shards" / "__0_0.distcp"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert script.main([str(sharded_run)]) == 1
    assert "__0_0.distcp: sha256 does not match" in capsys.readouterr().err


def test_refuses_what_is_not_a_sharded_run(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert script.main([str(tmp_path)]) == 1
    assert "not a training run folder (no config.json in it)" in capsys.readouterr().err
    unsharded = train(tmp_path, "ddp")
    assert script.main([str(unsharded)]) == 1
    assert "is not a sharded checkpoint" in capsys.readouterr().err
    assert script.main([str(unsharded), "--step", "7"]) == 1
    assert "has no checkpoint of step 7; it has steps [3]" in capsys.readouterr().err
