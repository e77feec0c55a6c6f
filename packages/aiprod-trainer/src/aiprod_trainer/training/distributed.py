"""Several training processes: torchrun + DistributedDataParallel, and who gets which data.

Launch with ``torchrun --nproc_per_node N -m aiprod_trainer.cli CONFIG.yaml`` (or
``python -m torch.distributed.run ...``). torchrun sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` reads them
and joins the process group (NCCL on CUDA, gloo on CPU). A plain ``aiprod-train`` run is a
world of one.

Data: every optimizer step consumes one *global batch* of ``batch_size * accumulation *
world_size`` items of one bucket. :class:`StepBatches` turns step numbers into global
batches (through :class:`~aiprod_trainer.data.latent_cache.BucketBatchSampler`, so the order
is a pure function of the seed and the epoch) and gives each rank its micro-batches, so
a resumed run, a run with more accumulation or a run on more processes sees the same items
at the same step. Only rank 0 writes checkpoints, logs and videos.
"""

from __future__ import annotations

import datetime
import gc
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from aiprod_trainer.data.bucket_sampler import BucketBatchSampler

TIMEOUT = datetime.timedelta(minutes=30)


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the run: rank, world size and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """Whether a process group is in use (more than one process)."""
        return self.world_size > 1


def pick_device(choice: str, local_rank: int = 0) -> torch.device:
    """``cpu``, ``cuda`` (this process's GPU) or ``auto`` (CUDA when available)."""
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def init_distributed(
    device_choice: str = "auto", environ: Mapping[str, str] | None = None
) -> DistributedContext:
    """Join the process group torchrun describes in the environment (if any)."""
    environ = os.environ if environ is None else environ
    world_size = int(environ.get("WORLD_SIZE", "1"))
    rank = int(environ.get("RANK", "0"))
    local_rank = int(environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_choice, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=rank, world_size=world_size, timeout=TIMEOUT)
    return DistributedContext(rank, world_size, local_rank, device)


def shutdown_distributed(*, synchronize: bool = False) -> None:
    """Leave the process group (a no-op without one).

    Garbage is collected first, so objects that still hold the group (an FSDP model's
    device mesh, a collective nobody waited for) go while the interpreter is whole: gloo
    worker threads that outlive the group can abort the process as it exits. With
    ``synchronize`` every process waits for the others before leaving, so none tears down
    its connections while another still writes or communicates; use it only when every
    process finished the run (a process that failed never arrives at the barrier).
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        if synchronize:
            dist.barrier()
        dist.destroy_process_group()


def barrier(context: DistributedContext) -> None:
    """Wait until every process arrives (a no-op for a single process)."""
    if context.enabled:
        dist.barrier()


def all_reduce_sum(values: Sequence[float], context: DistributedContext) -> list[float]:
    """Element-wise sums of ``values`` over all processes (float64)."""
    tensor = torch.tensor(list(values), dtype=torch.float64)
    if context.enabled:
        tensor = tensor.to(context.device)
        dist.all_reduce(tensor)
    return tensor.cpu().tolist()


def gather_objects(value: Any, context: DistributedContext) -> list[Any]:
    """Every process's ``value``, in rank order (on every process)."""
    if not context.enabled:
        return [value]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast_object(value: Any, context: DistributedContext) -> Any:
    """Rank 0's ``value`` on every process."""
    if not context.enabled:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


class StepBatches:
    """Global batches by optimizer step, split into each rank's micro-batches.

    ``buckets`` maps a bucket label to its item indices. A bucket's last global batch, when
    short, is filled up with the bucket's other items (in this epoch's order; its own items
    again only when the whole bucket is smaller than a batch), so every step has exactly
    ``global_batch`` items and the ranks never wait for each other.
    """

    def __init__(
        self,
        buckets: Mapping[str, Sequence[int]],
        *,
        batch_size: int,
        accumulation: int,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        if not buckets or not any(buckets.values()):
            raise ValueError("the dataset is empty: there is nothing to train on")
        self.batch_size = batch_size
        self.accumulation = accumulation
        self.world_size = world_size
        self.global_batch = batch_size * accumulation * world_size
        self.sampler = BucketBatchSampler(
            buckets, self.global_batch, seed=seed, shuffle=shuffle, drop_last=False
        )
        self.steps_per_epoch = len(self.sampler)
        self._bucket_of = {i: label for label, indices in buckets.items() for i in indices}
        self._epoch: tuple[int, list[list[int]]] | None = None

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, batch index within the epoch) of optimizer step ``step``."""
        return divmod(step, self.steps_per_epoch)

    def global_batch_at(self, step: int) -> list[int]:
        """The ``global_batch`` item indices step ``step`` trains on."""
        epoch, index = self.position(step)
        if self._epoch is None or self._epoch[0] != epoch:
            self._epoch = (epoch, self.sampler.batches(epoch))
        batches = self._epoch[1]
        batch = batches[index]
        if len(batch) == self.global_batch:
            return list(batch)
        label = self._bucket_of[batch[0]]
        mates = [i for b in batches if self._bucket_of[b[0]] == label for i in b if i not in batch]
        pool = list(batch) + mates
        return [pool[i % len(pool)] for i in range(self.global_batch)]

    def micro_batches(self, step: int, rank: int) -> list[tuple[int, list[int]]]:
        """Rank ``rank``'s micro-batches of step ``step`` as (first slot, item indices).

        A *slot* is an item's position in the global batch; per-item randomness (noise,
        noise level, text dropout) is drawn from ``(seed, step, slot)``, so it does not
        depend on how the global batch is split.
        """
        items = self.global_batch_at(step)
        result = []
        for micro in range(self.accumulation):
            start = (micro * self.world_size + rank) * self.batch_size
            result.append((start, items[start : start + self.batch_size]))
        return result


class MicroBatchSampler(Sampler[list[int]]):
    """Item indices of one rank's micro-batches from ``start_step`` up to ``stop_step``.

    A DataLoader ``batch_sampler``: loading (and worker prefetching) follows the same order
    as :class:`StepBatches`, and a resumed run starts at its step.
    """

    def __init__(self, plan: StepBatches, rank: int, start_step: int, stop_step: int) -> None:
        self.plan = plan
        self.rank = rank
        self.start_step = start_step
        self.stop_step = stop_step

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.stop_step):
            for _, items in self.plan.micro_batches(step, self.rank):
                yield items

    def __len__(self) -> int:
        return max(0, self.stop_step - self.start_step) * self.plan.accumulation
