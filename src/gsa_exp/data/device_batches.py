"""Batches as index slices of splits that live on the training device: no loader, no copies per step.

At 28 px and batch 128 a GPU step takes a few milliseconds, and a host loader's per-step
collate and host-to-device copy cost as much. With the uint8 splits resident on the GPU
(PneumoniaMNIST's training split is 3.7 MB, OCTMNIST's 76 MB), a batch is one gather.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import torch
from torch import Tensor

from gsa_exp.data.sampling import EpochShuffleSampler
from gsa_exp.data.splits import Split

log = logging.getLogger(__name__)


class DeviceBatches:
    """Iterates (images, labels) batches of a device-resident split.

    Training batches follow ``sampler`` (the same order as the host loader, incomplete last
    batch dropped); evaluation batches go through the split in order. ``sampler`` is an
    attribute so Lightning calls its ``set_epoch`` as it does for a DataLoader's.
    """

    batch_sampler = None  # read by Lightning's loader checks, as on a DataLoader

    def __init__(self, split: Split, batch_size: int, sampler: EpochShuffleSampler | None) -> None:
        self.images, self.labels = split.images, split.labels
        self.batch_size = batch_size
        self.sampler = sampler

    def __len__(self) -> int:
        count = self.images.shape[0]
        return count // self.batch_size if self.sampler is not None else -(-count // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        device = self.images.device
        if self.sampler is None:
            order = None
            stop = self.images.shape[0]
        else:  # one copy of the epoch's order per epoch, then gathers on the device
            order = self.sampler.next_order().to(device, non_blocking=True)
            stop = order.shape[0] - order.shape[0] % self.batch_size
        for start in range(0, stop, self.batch_size):
            if order is None:
                yield self.images[start : start + self.batch_size], self.labels[start : start + self.batch_size]
            else:
                index = order[start : start + self.batch_size]
                yield self.images[index], self.labels[index]


def fits_on_device(
    splits: dict[str, Split], device: torch.device, memory_share: float, option: str = "device_memory_share"
) -> bool:
    """True when the splits take at most ``memory_share`` of the device's free memory (always on the CPU)."""
    if device.type != "cuda":
        return True
    needed = sum(
        s.images.numel() * s.images.element_size() + s.labels.numel() * s.labels.element_size() for s in splits.values()
    )
    free, _ = torch.cuda.mem_get_info(device)
    return fits_in_free_memory(needed, free, memory_share, str(device), option)


def fits_in_free_memory(
    needed: int, free: int, memory_share: float, device: str, option: str = "device_memory_share"
) -> bool:
    """The decision, and the one log line when the data stay on the host.

    ``option`` names ``memory_share`` in that line: its bare name, or where the caller's config keeps it.
    """
    if needed <= memory_share * free:
        return True
    log.warning(
        "Data stay in host memory: the splits need %.0f MB, more than %s=%g of the "
        "%.0f MB free on %s; batches are copied per step instead",
        needed / 2**20,
        option,
        memory_share,
        free / 2**20,
        device,
    )
    return False
