"""Fixtures for the training tests: a tiny latent cache, real clips, configs to train with."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from aiprod_core.models import get_preset
from aiprod_pipelines.video_io import write_video
from aiprod_trainer.data.latent_cache import CacheMeta, LatentCacheWriter
from aiprod_trainer.data.manifest import ManifestRecord, write_manifest
from aiprod_trainer.data.synthetic import render_clip, sample_clip

TINY = get_preset("tiny")
TEXT_LENGTH = TINY.text_encoder.max_length
TEXT_DIM = TINY.text_encoder.dim


def write_latent_cache(
    folder: Path,
    items: int,
    *,
    seed: int = 0,
    sizes: Sequence[int] = (4,),
    preset: str = "tiny",
    channels: int = 8,
    text_length: int = TEXT_LENGTH,
) -> Path:
    """A cache of ``items`` learnable items (latents [channels, 3, size, size]).

    Item ``i`` has size ``sizes[i % len(sizes)]`` (its bucket is ``4 size x 4 size x 5``).
    Each item's latents are a per-channel constant plus a little texture, and its text a
    distinct random embedding, so a transformer can learn which latents go with which text.
    """
    generator = torch.Generator().manual_seed(seed)
    with LatentCacheWriter(folder, CacheMeta(preset, "builtin"), shard_size=3) as writer:
        for index in range(items):
            size = sizes[index % len(sizes)]
            shape = (channels, 3, size, size)
            base = torch.randn(channels, 1, 1, 1, generator=generator).expand(shape)
            latents = base + 0.3 * torch.randn(shape, generator=generator)
            text = torch.randn(text_length, TEXT_DIM, generator=generator)
            mask = torch.zeros(text_length, dtype=torch.bool)
            mask[: 6 + index] = True
            record = ManifestRecord(
                media=f"clips/clip-{index}.mp4",
                caption=f"clip {index}",
                width=4 * size,
                height=4 * size,
                frames=5,
                fps=8,
            )
            writer.add(f"item-{index:03d}", latents.contiguous(), text, mask, record)
    return folder


@pytest.fixture
def make_latent_cache(tmp_path: Path) -> Callable[..., Path]:
    """``make_latent_cache(name, items, **options)`` writes ``tmp_path/name`` (see above)."""

    def make(name: str, items: int, **options: Any) -> Path:
        return write_latent_cache(tmp_path / name, items, **options)

    return make


@pytest.fixture
def latent_cache(tmp_path: Path) -> Path:
    """Four cached items of one bucket (16x16x5 pixels -> latents [8, 3, 4, 4])."""
    return write_latent_cache(tmp_path / "cache", 4)


@pytest.fixture
def clip_manifest(tmp_path: Path) -> Path:
    """Four synthetic mp4 clips (16x16, 5 frames) and their manifest."""
    records = []
    for index in range(4):
        clip = sample_clip(0, index)
        frames = render_clip(clip, width=16, height=16, frames=5)
        write_video(tmp_path / "clips" / f"clip-{index}.mp4", frames, fps=8)
        records.append(
            ManifestRecord(
                media=f"clips/clip-{index}.mp4",
                caption=clip.caption,
                width=16,
                height=16,
                frames=5,
                fps=8,
            )
        )
    path = tmp_path / "train.jsonl"
    write_manifest(records, path)
    return path


BASE_CONFIG: dict[str, Any] = {
    "mode": "dit",
    "run_dir": "run",
    "seed": 0,
    "model": {"preset": "tiny"},
    "data": {"cache": "cache", "batch_size": 2},
    "optimizer": {"lr": 2.0e-3, "weight_decay": 0.0},
    "schedule": {"warmup_steps": 2, "min_lr_ratio": 0.1},
    "training": {"max_steps": 8, "log_every": 2, "text_dropout": 0.2, "progress": False},
    "checkpoints": {"every": 4, "keep_last": 2},
    "validation": {"every": 0, "at_start": False},
}


DELETE = "<delete>"
"""A change that removes a key (so that its default applies, or another key replaces it)."""


def merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` merged in (nested mappings merge, DELETE removes a key)."""
    result = copy.deepcopy(base)
    for key, value in changes.items():
        if value == DELETE:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a training config (the base one with changes merged in) into ``tmp_path``.

    A change of ``"<delete>"`` removes the key; None writes YAML ``null``.
    """

    def write(changes: dict[str, Any] | None = None, name: str = "train.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(merged(BASE_CONFIG, changes or {})), encoding="utf-8")
        return path

    return write
