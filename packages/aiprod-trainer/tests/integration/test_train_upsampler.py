"""Mode upsampler: the x2 latent upsampler trains on pairs of caches, lowers its held-out
loss below nearest-neighbour upsampling, exports its step count, resumes exactly, and
refuses caches that do not pair with one clear line."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch

from aiprod_core.checkpoints import load_model, read_checkpoint
from aiprod_core.models import build_model, get_preset
from aiprod_core.upsampler import nearest_upsample
from aiprod_trainer.config import load_train_config
from aiprod_trainer.data.latent_cache import CacheMeta, LatentCacheWriter
from aiprod_trainer.data.latent_pairs import downscaled_meta
from aiprod_trainer.data.manifest import ManifestRecord
from aiprod_trainer.training.run_setup import TrainingError
from aiprod_trainer.training.trainer import Trainer

pytestmark = pytest.mark.integration

TINY = get_preset("tiny")
TEXT = TINY.text_encoder
#: Every item's full-size latents are its half-size ones, nearest-upsampled, plus this
#: fixed sub-pixel pattern (per channel and position in each 2x2 block) and a little noise:
#: what the upsampler can learn, and nearest-neighbour upsampling cannot.
PATTERN = 0.6 * torch.randn(8, 1, 2, 2, generator=torch.Generator().manual_seed(99))
NOISE = 0.05


def write_pairs(
    folder: Path,
    items: int,
    *,
    seed: int,
    low_size: int = 4,
    low_shape: tuple[int, ...] | None = None,
    skip: frozenset[int] = frozenset(),
    preset: str = "tiny",
) -> tuple[Path, Path]:
    """``folder/full`` and ``folder/half``: ``items`` clips as latents [8, 3, 2s, 2s] and
    [8, 3, s, s] (or ``low_shape``), paired by id; ``skip`` leaves items out of ``half``."""
    generator = torch.Generator().manual_seed(seed)
    meta = CacheMeta(preset, TEXT.kind, {"weights": "test"})
    full_dir, half_dir = folder / "full", folder / "half"
    text = torch.zeros(TEXT.max_length, TEXT.dim)
    mask = torch.ones(TEXT.max_length, dtype=torch.bool)
    with (
        LatentCacheWriter(full_dir, meta) as full_writer,
        LatentCacheWriter(half_dir, downscaled_meta(meta, 2)) as half_writer,
    ):
        for index in range(items):
            low = torch.randn(8, 3, low_size, low_size, generator=generator)
            tiled = PATTERN.repeat(1, 3, low_size, low_size)
            noise = NOISE * torch.randn(8, 3, 2 * low_size, 2 * low_size, generator=generator)
            full = nearest_upsample(low[None])[0] + tiled + noise
            record = ManifestRecord(
                media=f"clips/clip-{index}.mp4",
                caption=f"clip {index}",
                width=8 * low_size,
                height=8 * low_size,
                frames=5,
                fps=8,
            )
            full_writer.add(record.media, full, text, mask, record)
            if index in skip:
                continue
            half = record.model_copy(update={"width": 4 * low_size, "height": 4 * low_size})
            stored = low if low_shape is None else torch.zeros(low_shape)
            half_writer.add(record.media, stored, text, mask, half)
    return full_dir, half_dir


UPSAMPLER: dict[str, Any] = {
    "mode": "upsampler",
    "data": {
        "cache": "train/full",
        "low_res_cache": "train/half",
        "validation_cache": "val/full",
        "validation_low_res_cache": "val/half",
        "batch_size": 2,
    },
    "optimizer": {"lr": 3.0e-3, "weight_decay": 0.0},
    "training": {"max_steps": 30, "log_every": 10, "text_dropout": 0.0, "progress": False},
    "checkpoints": {"every": 10, "keep_last": 1},
    "validation": {"every": 30, "at_start": True, "max_items": 4},
}


@pytest.fixture
def pairs(tmp_path: Path) -> Path:
    """Six training pairs and four held-out ones (other items, the same relation)."""
    write_pairs(tmp_path / "train", 6, seed=0)
    write_pairs(tmp_path / "val", 4, seed=1)
    return tmp_path


def test_training_beats_nearest_neighbour_and_exports_its_steps(
    pairs: Path, write_config: Callable[..., Path]
) -> None:
    config = load_train_config(write_config(UPSAMPLER))
    result = Trainer(config).fit()
    assert result.completed
    (first_step, before), (last_step, after) = result.validation
    assert (first_step, last_step) == (0, 30)
    # At step 0 the upsampler is nearest-neighbour upsampling plus a tiny residual, whose
    # error is the pattern's power; training learns most of the pattern.
    assert before == pytest.approx(float(PATTERN.pow(2).mean()) + NOISE**2, rel=0.1)
    assert after < 0.1 * before

    assert result.final_model is not None
    model, _ = load_model(result.final_model)
    assert int(model.upsampler.trained_steps) == 30
    assert model.upsampler.trained
    summary = json.loads((config.run_dir / "summary.json").read_text(encoding="utf-8"))
    assert (summary["mode"], summary["upsampler_trained_steps"]) == ("upsampler", 30)
    assert "generation_defaults" not in summary
    assert model.config.generation == TINY.generation

    with torch.random.fork_rng(devices=[]):  # the run's starting weights (preset, seed 0)
        torch.manual_seed(0)
        start = build_model(TINY).state_dict()
    final = read_checkpoint(result.final_model).tensors
    frozen = [name for name in start if not name.startswith("upsampler.")]
    assert len(frozen) > 100
    assert [name for name in frozen if not torch.equal(final[name], start[name])] == []
    weight = "upsampler.conv_out.conv.weight"
    assert not torch.equal(final[weight], start[weight])

    more = {"model": {"preset": None, "checkpoint": str(result.final_model)}, "run_dir": "more"}
    changes = {**UPSAMPLER, **more, "training": {**UPSAMPLER["training"], "max_steps": 2}}
    changes["validation"] = {"every": 0, "at_start": False}
    second = Trainer(load_train_config(write_config(changes, name="more.yaml"))).fit()
    assert second.final_model is not None
    continued, _ = load_model(second.final_model)
    assert int(continued.upsampler.trained_steps) == 32  # added to the count it had


def test_stop_and_resume_is_bit_identical(pairs: Path, write_config: Callable[..., Path]) -> None:
    changes = {
        **UPSAMPLER,
        "training": {**UPSAMPLER["training"], "max_steps": 10},
        "ema": {"enabled": True, "decay": 0.9},
        "checkpoints": {"every": 3, "keep_last": 2},
        "validation": {"every": 5, "at_start": True, "max_items": 2},
    }
    reference = Trainer(
        load_train_config(write_config({**changes, "run_dir": "reference"}, name="ref.yaml"))
    ).fit()
    config = load_train_config(write_config(changes))
    assert Trainer(config).fit(stop_at_step=4).step == 4
    resumed = Trainer(config, resume=True)
    assert resumed.start_step == 4
    second = resumed.fit()
    assert second.completed
    assert reference.final_model is not None
    assert second.final_model is not None
    left = read_checkpoint(second.final_model).tensors
    right = read_checkpoint(reference.final_model).tensors
    assert left.keys() == right.keys()
    assert [name for name in left if not torch.equal(left[name], right[name])] == []
    assert int(left["upsampler.trained_steps"]) == 10
    assert second.validation == [(5, reference.validation[1][1]), (10, reference.validation[2][1])]


WORKER = """
import faulthandler, sys
from pathlib import Path

import safetensors.torch

from aiprod_trainer.config import load_train_config
from aiprod_trainer.training.distributed import init_distributed, shutdown_distributed
from aiprod_trainer.training.trainer import Trainer

faulthandler.enable()  # a process that aborts shows where
context = init_distributed("cpu")
trainer = Trainer(load_train_config(sys.argv[1]), context=context)
trainer.fit()
state = {k: v.contiguous() for k, v in trainer.parts.trained.state_dict().items()}
safetensors.torch.save_file(state, Path(sys.argv[2]) / f"rank{context.rank}.safetensors")
del trainer  # as aiprod-train: the model goes before the process group
shutdown_distributed(synchronize=True)
"""


def test_two_processes_match_one_with_the_same_global_batch(
    pairs: Path, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    changes = {**UPSAMPLER, "training": {**UPSAMPLER["training"], "max_steps": 6}}
    changes["validation"] = {"every": 0, "at_start": False}
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER, encoding="utf-8")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(worker), str(write_config(changes, name="ddp.yaml")), str(tmp_path),
    ]  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert finished.returncode == 0, finished.stderr[-3000:]
    ranks = [safetensors.torch.load_file(tmp_path / f"rank{rank}.safetensors") for rank in (0, 1)]
    weights = [name for name in ranks[0] if name != "trained_steps"]
    assert [name for name in weights if not torch.equal(ranks[0][name], ranks[1][name])] == []
    assert int(ranks[0]["trained_steps"]) == 6  # counted on rank 0, which exports
    exported, _ = load_model(tmp_path / "run" / "model.safetensors")
    assert int(exported.upsampler.trained_steps) == 6

    single = {**changes, "run_dir": "single", "data": {**changes["data"], "batch_size": 4}}
    trainer = Trainer(load_train_config(write_config(single, name="single.yaml")))
    trainer.fit()
    # An all-reduced mean and one batch's mean sum in different orders; Adam divides each
    # update by the root of its squared gradients, so a weight whose gradient is near zero
    # turns that rounding into differences of a few 1e-5 after 6 steps (one in 1e5 weights).
    for name, tensor in trainer.parts.trained.state_dict().items():
        torch.testing.assert_close(ranks[0][name], tensor, rtol=1e-4, atol=5e-5)


def build_error(write_config: Callable[..., Path], changes: dict[str, Any]) -> str:
    config = load_train_config(write_config({**UPSAMPLER, **changes}))
    with pytest.raises(TrainingError) as error:
        Trainer(config)
    return str(error.value)


@pytest.mark.fault("files")
def test_missing_pairs_are_named(tmp_path: Path, write_config: Callable[..., Path]) -> None:
    write_pairs(tmp_path / "train", 6, seed=0, skip=frozenset({1, 2, 3, 4}))
    write_pairs(tmp_path / "val", 2, seed=1)
    message = build_error(write_config, {})
    assert message == (
        f"data.low_res_cache: {tmp_path / 'train' / 'half'} lacks 4 item(s) of data.cache "
        "('clips/clip-1.mp4', 'clips/clip-2.mp4', 'clips/clip-3.mp4', ...); both caches must "
        f"hold the same clips ({tmp_path / 'train' / 'full'}): encode one manifest twice, the "
        "second time with compute_latents.py --downscale 2"
    )


@pytest.mark.fault("files")
def test_wrong_low_res_shapes_name_the_key_and_the_shapes(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    write_pairs(tmp_path / "train", 2, seed=0)
    write_pairs(tmp_path / "val", 2, seed=1, low_shape=(8, 3, 8, 8))  # full size, not half
    message = build_error(write_config, {})
    assert message == (
        "data.validation_low_res_cache: item 'clips/clip-0.mp4' has latents [8, 3, 8, 8] (and "
        "1 more item(s)); expected [8, 3, 4, 4]: data.validation_cache's [8, 3, 8, 8] at half "
        "height and width with the same channels and frames (make it with compute_latents.py "
        "--downscale 2)"
    )


@pytest.mark.fault("files")
def test_caches_of_another_model_are_refused(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    write_pairs(tmp_path / "train", 2, seed=0, preset="small")
    write_pairs(tmp_path / "val", 2, seed=1, preset="small")
    assert build_error(write_config, {}) == (
        f"data.cache: {tmp_path / 'train' / 'full'} was made for preset 'small'; the model "
        "being trained is 'tiny'"
    )
