"""Which items each step and each process trains on, and the single-process helpers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aiprod_trainer.training.distributed import (
    DistributedContext,
    MicroBatchSampler,
    StepBatches,
    all_reduce_sum,
    barrier,
    broadcast_object,
    gather_objects,
    init_distributed,
    pick_device,
    shutdown_distributed,
)

BUCKETS = {"16x16x5": [0, 1, 2, 3, 4], "8x8x5": [5, 6, 7]}


def plan(batch: int, accumulation: int = 1, world: int = 1, **options: object) -> StepBatches:
    return StepBatches(
        BUCKETS, batch_size=batch, accumulation=accumulation, world_size=world, **options
    )


def test_every_step_is_a_full_batch_of_one_bucket() -> None:
    steps = plan(batch=2)
    assert steps.global_batch == 2
    assert steps.steps_per_epoch == 5
    seen = []
    for step in range(steps.steps_per_epoch):
        items = steps.global_batch_at(step)
        assert len(items) == 2
        assert set(items) <= set(BUCKETS["16x16x5"]) or set(items) <= set(BUCKETS["8x8x5"])
        seen += items
    assert set(seen) == set(range(8))  # every item once per epoch (short batches repeat)
    assert steps.position(7) == (1, 2)


def test_order_depends_on_seed_and_epoch_only() -> None:
    first = [plan(batch=2, seed=3).global_batch_at(s) for s in range(10)]
    assert first == [plan(batch=2, seed=3).global_batch_at(s) for s in range(10)]
    assert first != [plan(batch=2, seed=4).global_batch_at(s) for s in range(10)]
    assert first[:5] != first[5:]  # epochs are reshuffled
    ordered = plan(batch=2, shuffle=False)
    assert [ordered.global_batch_at(s) for s in range(5)] == [
        [0, 1],
        [2, 3],
        [4, 0],
        [5, 6],
        [7, 5],
    ]


def test_same_items_however_the_global_batch_is_split() -> None:
    whole = plan(batch=4)
    accumulated = plan(batch=1, accumulation=2, world=2)
    for step in range(6):
        items = whole.global_batch_at(step)
        assert accumulated.global_batch_at(step) == items
        rank0 = accumulated.micro_batches(step, rank=0)
        rank1 = accumulated.micro_batches(step, rank=1)
        # micro-batch m of rank r holds slot (m * world + r) * batch
        assert rank0 == [(0, items[0:1]), (2, items[2:3])]
        assert rank1 == [(1, items[1:2]), (3, items[3:4])]


def test_a_bucket_smaller_than_a_batch_repeats_its_items() -> None:
    steps = StepBatches({"a": [0], "b": [1, 2, 3]}, batch_size=2, accumulation=1, shuffle=False)
    assert [steps.global_batch_at(s) for s in range(3)] == [[0, 0], [1, 2], [3, 1]]


def test_micro_batch_sampler_follows_the_plan() -> None:
    steps = plan(batch=1, accumulation=2)
    sampler = MicroBatchSampler(steps, rank=0, start_step=3, stop_step=5)
    assert len(sampler) == 4
    expected = [items for step in (3, 4) for _, items in steps.micro_batches(step, 0)]
    assert list(sampler) == expected
    assert len(MicroBatchSampler(steps, 0, 5, 3)) == 0


def test_an_empty_dataset_is_refused() -> None:
    with pytest.raises(ValueError, match="the dataset is empty"):
        StepBatches({}, batch_size=1, accumulation=1)


def test_single_process_helpers() -> None:
    context = init_distributed("cpu", environ={})
    assert context == DistributedContext()
    assert context.is_main
    assert not context.enabled
    assert all_reduce_sum([1.5, 2.0], context) == [1.5, 2.0]
    assert gather_objects({"a": 1}, context) == [{"a": 1}]
    assert broadcast_object("x", context) == "x"
    barrier(context)
    shutdown_distributed()  # no process group: nothing to do
    assert pick_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device("auto").type == expected
    assert pick_device("cuda", 1) == torch.device("cuda", 1)
    rank = init_distributed("cpu", environ={"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"})
    assert rank.world_size == 1


@pytest.mark.parametrize("synchronize", [False, True])
def test_shutdown_leaves_the_process_group(tmp_path: Path, synchronize: bool) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    assert torch.distributed.is_initialized()
    shutdown_distributed(synchronize=synchronize)
    assert not torch.distributed.is_initialized()
    shutdown_distributed(synchronize=synchronize)  # already left: nothing to do
