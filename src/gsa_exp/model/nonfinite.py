"""The non-finite-loss guard, kept on the device so a training step never waits for the host."""

from __future__ import annotations

import torch
from torch import Tensor


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the step."""


class NonFiniteLossWatch:
    """Remembers the first non-finite loss (its value, step, epoch and batch) in device tensors.

    ``update`` queues a few tiny kernels and reads nothing back; ``raise_if_seen`` reads one
    number (a device-to-host sync), so the model calls it only at the logging interval and at
    the end of every epoch, before validation and checkpointing can see the broken weights.
    """

    def __init__(self) -> None:
        self._where: Tensor | None = None  # step, epoch, batch of the first non-finite loss; -1 = none yet
        self._loss: Tensor | None = None

    def reset(self) -> None:
        self._where = self._loss = None

    def update(self, loss: Tensor, *, step: int, epoch: int, batch: int) -> None:
        loss = loss.detach().float()
        if self._where is None:
            self._where = torch.full((3,), -1, dtype=torch.int64, device=loss.device)
            self._loss = torch.zeros((), device=loss.device)
        first = ~torch.isfinite(loss) & (self._where[0] < 0)
        # fills from Python scalars (kernel arguments), not torch.tensor(...): no host-to-device copy
        here = torch.stack([torch.full_like(self._where[0], value) for value in (step, epoch, batch)])
        self._where = torch.where(first, here, self._where)
        self._loss = torch.where(first, loss, self._loss)

    def raise_if_seen(self) -> None:
        if self._where is None:
            return
        step, epoch, batch = (int(value) for value in self._where.tolist())
        if step < 0:
            return
        raise NonFiniteLossError(
            f"non-finite loss ({float(self._loss)}) at epoch {epoch}, step {step} (batch {batch}): training "
            "stopped, checkpoints written so far are kept. Lower optimizer.lr, or set loss.nonfinite=skip "
            "to skip such batches"
        )
