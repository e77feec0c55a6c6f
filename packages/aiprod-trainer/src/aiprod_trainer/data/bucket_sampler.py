"""Batches of dataset items that share a bucket (so one latent shape), resumable by position."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
from torch.utils.data import Sampler


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of item indices, each from one bucket (so one latent shape).

    The batches of an epoch are a pure function of ``(seed, epoch)``: each bucket's items
    are shuffled and cut into batches, then all batches are shuffled together. With
    ``num_replicas`` processes, replica ``rank`` takes every ``num_replicas``-th batch and
    all replicas get the same number (the remainder is dropped).

    Position: iteration yields the batches of ``epoch`` from batch ``index`` on, and does
    not move the position itself (a DataLoader reads ahead of the training loop). The
    training loop records how many batches it consumed and resumes with
    ``set_epoch(epoch, index)``.
    """

    def __init__(
        self,
        buckets: Mapping[str, Sequence[int]],
        batch_size: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if batch_size < 1 or seed < 0 or not 0 <= rank < num_replicas:
            raise ValueError(
                "expected batch_size >= 1, seed >= 0 and 0 <= rank < num_replicas; got "
                f"batch_size={batch_size}, seed={seed}, rank={rank}, num_replicas={num_replicas}"
            )
        self.buckets = {label: list(indices) for label, indices in buckets.items()}
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.index = 0

    def set_epoch(self, epoch: int, index: int = 0) -> None:
        """Start the next iteration at batch ``index`` of ``epoch``."""
        if epoch < 0 or not 0 <= index <= len(self):
            raise ValueError(
                f"expected epoch >= 0 and 0 <= index <= {len(self)}, got {epoch}, {index}"
            )
        self.epoch, self.index = epoch, index

    def batches(self, epoch: int) -> list[list[int]]:
        """This replica's batches of ``epoch``, in order."""
        rng = np.random.default_rng([self.seed, epoch])
        batches: list[list[int]] = []
        for label in sorted(self.buckets):
            indices = list(self.buckets[label])
            if self.shuffle:
                indices = [indices[i] for i in rng.permutation(len(indices))]
            for start in range(0, len(indices), self.batch_size):
                batch = indices[start : start + self.batch_size]
                if len(batch) == self.batch_size or not self.drop_last:
                    batches.append(batch)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        usable = len(batches) - len(batches) % self.num_replicas
        return batches[self.rank : usable : self.num_replicas]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches(self.epoch)[self.index :])

    def __len__(self) -> int:
        """Batches per epoch for this replica (independent of the epoch)."""
        total = 0
        for indices in self.buckets.values():
            full, rest = divmod(len(indices), self.batch_size)
            total += full + (1 if rest and not self.drop_last else 0)
        return total // self.num_replicas
