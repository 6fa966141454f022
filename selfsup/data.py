"""Resumable, rank-aware data loading for map-style datasets.

The sampler walks an endless stream of *sample keys*: epoch e contributes a permutation of
``range(N)`` drawn from (seed, e), and key = e * N + index. A dataset receives the key and takes
``index = key % N`` and a private ``torch.Generator`` seeded from (seed, key) for its random
augmentation. So the sample *and* its augmentation depend only on the seed and the stream
position — never on worker count, rank count or whether the run was resumed.
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .errors import UserError
from .task import BatchPlan


def sample_generator(seed: int, key: int) -> torch.Generator:
    """A generator owned by one sample draw: same (seed, key) -> same augmentation."""
    return torch.Generator().manual_seed((seed * 0x9E3779B1 + key * 0x85EBCA77 + 1) % (2**63 - 1))


class StepSampler(Sampler[list[int]]):
    """Yields this rank's micro-batches of sample keys, starting at ``plan.start_step``, forever."""

    def __init__(self, num_samples: int, plan: BatchPlan):
        if num_samples <= 0:
            raise UserError("the training set is empty: nothing to train on; check the task's data settings")
        self.n, self.plan = num_samples, plan
        self._epoch, self._perm = -1, None

    def _key(self, position: int) -> int:
        epoch, offset = divmod(position, self.n)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.plan.seed * 1_000_003 + epoch)
            self._perm, self._epoch = torch.randperm(self.n, generator=g), epoch
        return epoch * self.n + int(self._perm[offset])

    def __iter__(self) -> Iterator[list[int]]:
        p = self.plan
        step = p.start_step
        while True:
            base = step * p.global_batch_size
            for m in range(p.grad_accum):
                start = base + (m * p.world_size + p.rank) * p.micro_batch_size
                yield [self._key(start + i) for i in range(p.micro_batch_size)]
            step += 1


class KeyedDataset(Dataset):
    """Adapts ``fn(index, generator) -> sample`` to the key protocol above."""

    def __init__(self, num_samples: int, fn: Callable[[int, torch.Generator], object], seed: int):
        self.n, self.fn, self.seed = num_samples, fn, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: int):
        return self.fn(key % self.n, sample_generator(self.seed, key))


def step_loader(num_samples: int, fn: Callable[[int, torch.Generator], object], plan: BatchPlan,
                collate_fn: Callable | None = None) -> DataLoader:
    """The DataLoader a map-style task returns from ``train_batches``."""
    return DataLoader(
        KeyedDataset(num_samples, fn, plan.seed),
        batch_sampler=StepSampler(num_samples, plan),
        num_workers=plan.num_workers,
        collate_fn=collate_fn,
        pin_memory=plan.pin_memory,
        persistent_workers=plan.num_workers > 0,
        # an explicit generator keeps DataLoader from drawing on the global RNG, which a resume restores
        generator=torch.Generator().manual_seed(plan.seed),
    )
