"""Checkpoints that survive a kill: written durably, and ``last.ckpt`` always the latest state.

Lightning's writer stages a checkpoint in ``$TMPDIR`` and moves it (on another filesystem, a copy
a kill can cut), and its ``save_last`` writes ``last.ckpt`` only when the monitored metric
improves, so a resume could repeat finished epochs. Both are replaced here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint

from gsa_exp import durable
from gsa_exp.errors import OptionError
from gsa_exp.option_schema import check_options
from gsa_exp.options.callbacks import CheckpointOptions

LAST_NAME = "last.ckpt"


class DurableCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into a temp file beside the checkpoint, fsync, rename (``gsa_exp.durable``).

    Remote paths (``s3://...``) keep Lightning's writer: their stores replace objects whole.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError(f"storage_options are not supported by {type(self).__name__} (got {storage_options!r})")
        with durable.durable_open(Path(path), "wb") as stream:
            torch.save(checkpoint, stream)


class BestAndLastCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint for the best model, plus ``last.ckpt`` after every training epoch
    whatever the monitored metric did, and every ``last_every_n_train_steps`` optimizer steps for long
    epochs (null: epochs only).

    ``last.ckpt`` is written after the best one of the same epoch, so it carries the best model's
    record and a resume from it ends exactly like an uninterrupted run.
    """

    def __init__(self, *, save_last: bool = True, last_every_n_train_steps: int | None = None, **options: Any) -> None:
        declared = dict(save_last=save_last, last_every_n_train_steps=last_every_n_train_steps)
        declared["save_weights_only"] = options.get("save_weights_only", False)
        check_options(CheckpointOptions, declared, OptionError, prefix="callbacks.model_checkpoint.")
        super().__init__(save_last=False, **options)
        self.keep_last = save_last
        self.last_every_n_train_steps = last_every_n_train_steps
        self._last_step_saved: int | None = None  # accumulated gradients: several batches share one step

    def last_path(self) -> Path:
        return Path(self.dirpath or ".") / LAST_NAME

    def _saves_now(self, trainer: pl.Trainer) -> bool:
        return self.keep_last and not trainer.fast_dev_run and not trainer.sanity_checking

    def _save_last(self, trainer: pl.Trainer) -> None:
        trainer.save_checkpoint(self.last_path(), weights_only=self.save_weights_only)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any, **kwargs: Any) -> None:
        super().on_train_batch_end(trainer, pl_module, *args, **kwargs)
        every = self.last_every_n_train_steps
        step = trainer.global_step
        if every and self._saves_now(trainer) and step % every == 0 and step != self._last_step_saved:
            self._last_step_saved = step
            self._save_last(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)  # validation has run: the best checkpoint is up to date
        if self._saves_now(trainer):
            self._save_last(trainer)
