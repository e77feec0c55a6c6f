"""Gradient accumulation is the same optimisation as a larger batch: two micro-batches of
one item update the weights like one batch of two (up to float rounding)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from aiprod_core.checkpoints import read_checkpoint
from aiprod_trainer.config import load_train_config
from aiprod_trainer.training.trainer import Trainer

pytestmark = pytest.mark.integration


def train(write_config: Callable[..., Path], name: str, batch: int, accumulation: int) -> tuple:
    path = write_config(
        {
            "run_dir": name,
            "data": {"batch_size": batch},
            "optimizer": {"accumulation": accumulation},
            "training": {"max_steps": 6, "text_dropout": 0.5},
            "checkpoints": {"every": 6},
        },
        name=f"{name}.yaml",
    )
    result = Trainer(load_train_config(path)).fit()
    return result, read_checkpoint(result.run_dir / "model.safetensors").tensors


def test_accumulating_two_batches_of_one_equals_one_batch_of_two(
    latent_cache: Path, write_config: Callable[..., Path]
) -> None:
    batched, batched_weights = train(write_config, "batched", batch=2, accumulation=1)
    accumulated, accumulated_weights = train(write_config, "accumulated", batch=1, accumulation=2)

    assert [s for s, _ in batched.losses] == [s for s, _ in accumulated.losses] == list(range(1, 7))
    for (_, one), (_, two) in zip(batched.losses, accumulated.losses, strict=True):
        assert one == pytest.approx(two, rel=1e-5)
    assert batched_weights["transformer.final_proj.weight"].abs().max() > 0  # it trained
    # Adam divides each update by the root of its squared gradients, so for a weight whose
    # gradient is near zero the two summation orders (one mean over two items, two halves
    # added) differ by a few 1e-6 after 6 steps (a cross-attention bias, 1 weight in 192).
    for name, tensor in batched_weights.items():
        torch.testing.assert_close(
            accumulated_weights[name],
            tensor,
            rtol=1e-4,
            atol=1e-5,
            msg=lambda m, n=name: f"{n}: {m}",
        )


def test_a_different_split_of_the_data_gives_different_weights(
    latent_cache: Path, write_config: Callable[..., Path]
) -> None:
    """The comparison above can fail: other data per step changes the result."""
    _, pairs = train(write_config, "pairs", batch=2, accumulation=1)
    _, singles = train(write_config, "singles", batch=1, accumulation=1)
    name = "transformer.final_proj.weight"
    assert not torch.allclose(pairs[name], singles[name], rtol=1e-4, atol=1e-6)
