"""An exponential moving average (EMA) of the weights, ``callbacks.ema``: Lightning's weight averaging,
fitted to the run's checkpoints, its attention-map cache and its evaluation after fit.

Lightning's ``WeightAveraging`` keeps the average in an ``AveragedModel`` (a copy of the whole module,
buffers included: BatchNorm statistics are averaged too) and writes it as the checkpoint's
``state_dict``, with the training weights under ``current_model_state``; so ``best.ckpt``, ``eval.py``,
``predict.py`` and ``load_from_checkpoint`` all read the average with no change, and a resume from
``last.ckpt`` restores both. What this class changes, and why:

* The average is swapped in around the whole validation loop (``on_validation_start`` / ``_end``), not
  only its epoch hooks, so ``AttentionMapMonitor`` scores and draws the averaged map at the epoch's end,
  and the training weights are back before the checkpoint callback (always last) saves.
* Swaps write the tensors in place under ``no_grad``, not through ``.data``: global attention caches
  its map until a parameter's version changes, and ``.data`` writes leave the version as it was.
* Outside fit it does nothing: ``trainer.validate`` / ``test`` with ``ckpt_path=best`` evaluate the
  average they load (Lightning's callback would load the checkpoint's training weights over it).
* ``warmup``: the decay of timm's ``ModelEmaV3``, ``min(decay, 1 - (1 + n)^(-2/3))`` at the n-th
  update, computed on the device (no host sync per step), so that the few hundred steps of a short
  run are not dominated by the initial weights (0.999 alone remembers about 1000 steps).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import WeightAveraging
from pytorch_lightning.trainer.states import TrainerFn
from torch import Tensor, nn

from gsa_exp.errors import OptionError
from gsa_exp.option_schema import check_options
from gsa_exp.options.callbacks import EmaOptions

WARMUP_POWER = 2.0 / 3.0  # timm's ModelEmaV3 default (warmup_gamma 1)


def _tensors(module: nn.Module) -> Iterator[Tensor]:
    """Parameters then buffers, in the order ``AveragedModel`` pairs them."""
    return itertools.chain(module.parameters(), module.buffers())


class ExponentialMovingAverage(WeightAveraging):
    """EMA of every parameter and buffer, updated after every ``every_n_steps`` optimizer steps."""

    def __init__(self, *, decay: float, warmup: bool, every_n_steps: int) -> None:
        options = dict(enabled=True, decay=decay, warmup=warmup, every_n_steps=every_n_steps)
        check_options(EmaOptions, options, OptionError, prefix="callbacks.ema.")
        super().__init__(use_buffers=True, multi_avg_fn=self._update)
        self.decay = decay
        self.warmup = warmup
        self.every_n_steps = every_n_steps

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return step_idx is not None and step_idx % self.every_n_steps == 0

    def new_weight_share(self, updates: Tensor) -> Tensor:
        """The share of the current weights in the update after ``updates`` earlier ones (>= 1): 1 - decay,
        or with ``warmup`` max(1 - decay, (1 + updates)^(-2/3))."""
        share = torch.full_like(updates, 1.0 - self.decay, dtype=torch.float32)
        if self.warmup:
            share = torch.maximum(share, (updates.float() + 1.0).pow(-WARMUP_POWER))
        return share

    @torch.no_grad()
    def _update(self, averaged: list[Tensor], current: list[Tensor], updates: Tensor) -> None:
        """One update of a group of tensors of one device and dtype (``AveragedModel``'s ``multi_avg_fn``)."""
        if averaged[0].is_floating_point():
            torch._foreach_lerp_(averaged, current, self.new_weight_share(updates).to(averaged[0].dtype))
        else:  # integer buffers (BatchNorm's batch count): the latest value
            for kept, latest in zip(averaged, current, strict=True):
                kept.copy_(latest)

    def _fitting(self, trainer: pl.Trainer) -> bool:
        return trainer.state.fn == TrainerFn.FITTING and self._average_model is not None

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._fitting(trainer):
            self._swap_models(pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._fitting(trainer):
            self._swap_models(pl_module)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Nothing: the swaps enclose the whole loop (``on_validation_start`` / ``on_validation_end``)."""

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Nothing: see ``on_validation_epoch_start``."""

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self._fitting(trainer):  # a resume: the average and the training weights both come back
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
        # validate / test: the module holds the checkpoint's state_dict, the average, as eval.py would

    @torch.no_grad()
    def _swap_models(self, pl_module: pl.LightningModule) -> None:
        for averaged, current in zip(_tensors(self._average_model.module), _tensors(pl_module), strict=True):
            kept = averaged.clone()
            averaged.copy_(current)
            current.copy_(kept)

    @torch.no_grad()
    def _copy_average_to_current(self, pl_module: pl.LightningModule) -> None:
        for averaged, current in zip(_tensors(self._average_model.module), _tensors(pl_module), strict=True):
            current.copy_(averaged)


def exponential_moving_average(
    *, enabled: bool, decay: float, warmup: bool, every_n_steps: int
) -> ExponentialMovingAverage | None:
    """The ``callbacks.ema`` node: the callback, or None when ``enabled`` is false (Hydra builds no callback)."""
    options = dict(enabled=enabled, decay=decay, warmup=warmup, every_n_steps=every_n_steps)
    check_options(EmaOptions, options, OptionError, prefix="callbacks.ema.")
    return ExponentialMovingAverage(decay=decay, warmup=warmup, every_n_steps=every_n_steps) if enabled else None
