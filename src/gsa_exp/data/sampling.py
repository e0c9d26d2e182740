"""A training order that a resumed run can reproduce exactly."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import Sampler


class EpochShuffleSampler(Sampler[int]):
    """A random permutation per epoch that depends only on ``(seed, epoch)``.

    Unlike ``shuffle=True`` (which draws from the global random state), the order of epoch
    e is known again after a restart, and ``skip`` lets a run resumed mid-epoch continue
    with the very next batch. Lightning calls ``set_epoch`` before every epoch; without it
    (e.g. behind a distributed wrapper) the epoch advances on every pass.
    """

    def __init__(self, size: int, seed: int | None) -> None:
        self.size = size
        self.seed = int(torch.seed() % 2**31) if seed is None else seed  # null seed: a fresh order
        self.epoch = 0
        self._pending_skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def skip_next(self, count: int) -> None:
        """Leave out the first ``count`` indices of the next pass (the part of the epoch already trained)."""
        self._pending_skip = count

    def __len__(self) -> int:
        return self.size

    def next_order(self) -> Tensor:
        """The indices of the next pass as a tensor (what ``__iter__`` yields), and advance the epoch."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator)
        skip, self._pending_skip = self._pending_skip, 0
        self.epoch += 1
        return order[skip:]

    def __iter__(self) -> Iterator[int]:
        return iter(self.next_order().tolist())
