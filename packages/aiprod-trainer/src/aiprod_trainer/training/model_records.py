"""What a finished run records in the model it exports, besides the weights.

- mode ``vae``: :func:`measure_latent_statistics` measures the per-channel mean and std of
  the trained VAE's posterior means over (a seeded sample of) the training clips; they are
  stored in ``vae.latent_stats`` and so in the checkpoint, and every latent cache made
  with this VAE, the transformer and the upsampler work on normalised latents.
- modes ``dit`` and ``lora``: :func:`generation_defaults` reads the most common clip size
  and frame rate of the training cache, which become the model's
  ``config.generation``: what ``aiprod-generate`` makes when asked for no size.
- mode ``upsampler``: :func:`add_trained_steps` adds the run's optimizer steps to the
  upsampler's ``trained_steps`` (pipelines warn about an upsampler whose count is 0); the
  generation defaults stay those of the model it started from.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch

from aiprod_core.models import GenerationDefaults
from aiprod_core.upsampler import LatentUpsampler
from aiprod_core.vae import CausalVideoVAE, StatisticsAccumulator
from aiprod_trainer.data.buckets import Bucket
from aiprod_trainer.training.batches import collate, dataset_buckets


def measure_latent_statistics(
    vae: CausalVideoVAE,
    dataset: Any,
    *,
    max_items: int,
    batch_size: int,
    device: torch.device,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(mean, std, items)``: per-channel statistics of ``vae``'s posterior means over at
    most ``max_items`` clips of ``dataset`` (a seeded sample when it holds more)."""
    count = len(dataset)
    if count == 0:
        raise ValueError("the training set holds no clips to measure latent statistics on")
    indices = list(range(count))
    if count > max_items:
        order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
        indices = sorted(order[:max_items].tolist())
    groups = _same_shape_groups(dataset, indices)
    accumulator = StatisticsAccumulator(vae.config.latent_channels)
    was_training = vae.training
    vae.eval()
    try:
        with torch.inference_mode():
            for group in groups:
                for start in range(0, len(group), batch_size):
                    clips = collate([dataset[i] for i in group[start : start + batch_size]])
                    dtype = next(vae.parameters()).dtype
                    accumulator.update(vae.encode(clips.to(device, dtype)).mean.float())
    finally:
        vae.train(was_training)
    mean, std = accumulator.result()
    return mean, std, len(indices)


def _same_shape_groups(dataset: Any, indices: list[int]) -> list[list[int]]:
    """``indices`` grouped by clip shape (the dataset's buckets), so batches stack."""
    wanted = set(indices)
    groups = [[i for i in bucket if i in wanted] for bucket in dataset_buckets(dataset).values()]
    return [group for group in groups if group]


def generation_defaults(dataset: Any, fallback: GenerationDefaults) -> GenerationDefaults:
    """The most common clip size (and its most common frame rate) of a latent cache's
    items; ``fallback`` for what the cache does not record."""
    entries = getattr(getattr(dataset, "cache", None), "entries", None)
    if not entries:
        return fallback
    bucket_label, _ = Counter(entry.bucket for entry in entries).most_common(1)[0]
    bucket = Bucket.parse(bucket_label)
    rates = Counter(entry.fps for entry in entries if entry.bucket == bucket_label)
    rate, _ = rates.most_common(1)[0]
    fps = fallback.fps if rate is None else max(1, round(rate))
    return GenerationDefaults(
        width=bucket.width, height=bucket.height, frames=bucket.frames, fps=fps
    )


def add_trained_steps(upsampler: LatentUpsampler, steps: int) -> int:
    """Add ``steps`` optimizer steps to ``upsampler.trained_steps``; return the new count."""
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    with torch.no_grad():
        upsampler.trained_steps.add_(steps)
    return int(upsampler.trained_steps)
