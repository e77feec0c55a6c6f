"""Batches and seeded randomness: what every objective and the step loop share.

A step's items are collated into one :data:`Batch`; each item draws its randomness from
:func:`item_generator` ``(seed, stream, step, slot)``, never from the global generators, so
a step computes the same thing however its batch is split across accumulation steps or
processes, and after a resume. :func:`dataset_buckets` groups a dataset's items by shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from aiprod_trainer.data.buckets import Bucket

TRAIN_STREAM = 0
VALIDATION_STREAM = 1

Batch = Any
"""A collated batch: a video tensor (vae), a dict of latents, text, mask (dit, lora), or a
dict of full-size ``latents`` and half-size ``low_res`` latents (upsampler)."""


def mixed_seed(*parts: int) -> int:
    """A 63-bit seed that depends on every part (numpy's SeedSequence hashing)."""
    state = np.random.SeedSequence([int(part) for part in parts]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def item_generator(seed: int, stream: int, step: int, slot: int) -> torch.Generator:
    """The CPU generator of one item of one step (``stream``: training or validation)."""
    return torch.Generator(device="cpu").manual_seed(mixed_seed(seed, stream, step, slot))


def collate(items: Sequence[Any]) -> Batch:
    """Stack clips (tensors) or cached items (dicts of tensors; other values as lists)."""
    first = items[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(list(items))
    batch: dict[str, Any] = {}
    for key, value in first.items():
        values = [item[key] for item in items]
        batch[key] = torch.stack(values) if isinstance(value, torch.Tensor) else values
    return batch


def dataset_buckets(dataset: Any) -> dict[str, list[int]]:
    """Item indices per bucket label: from ``dataset.buckets()`` (latent caches) or from the
    shapes of ``dataset.records`` (clip datasets); one bucket when neither is there."""
    if hasattr(dataset, "buckets"):
        return {label: list(indices) for label, indices in dataset.buckets().items()}
    if hasattr(dataset, "records"):
        groups: dict[str, list[int]] = {}
        for index, record in enumerate(dataset.records):
            groups.setdefault(Bucket.of(record).label, []).append(index)
        return groups
    return {"all": list(range(len(dataset)))}


def batch_size_of(batch: Batch) -> int:
    """How many items ``batch`` holds."""
    return int(batch.shape[0] if isinstance(batch, torch.Tensor) else batch["latents"].shape[0])
