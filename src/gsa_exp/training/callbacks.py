"""Callbacks that show what the attention learned: the map as an image and its AUROC on the ground truth."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only
from torch import Tensor

from gsa_exp.model.metrics import map_auroc
from gsa_exp.training.outputs import save_attention_map


class AttentionMapMonitor(pl.Callback):
    """Logs the shared attention map each validation epoch and scores it against the known region.

    ``val/map_auroc`` and ``test/map_auroc`` appear when the data set knows where its class
    signal lives (the synthetic set does). After testing, the map of the tested weights is
    saved as ``attention_map.npy`` / ``.png`` in ``output_dir``.
    """

    def __init__(self, *, output_dir: str, log_images: bool) -> None:
        super().__init__()
        self.output_dir = Path(output_dir)
        self.log_images = log_images

    @staticmethod
    def _map(pl_module: pl.LightningModule) -> Tensor | None:
        return pl_module.attention.shared_map()

    @staticmethod
    def _mask(trainer: pl.Trainer) -> Tensor | None:
        datamodule = trainer.datamodule
        return getattr(datamodule, "region_mask", None)

    def _score(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        attention_map, mask = self._map(pl_module), self._mask(trainer)
        if attention_map is not None and mask is not None:
            pl_module.log(f"{stage}/map_auroc", map_auroc(attention_map, mask), on_epoch=True)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._score(trainer, pl_module, "val")
        if self.log_images and not trainer.sanity_checking:
            self._log_image(trainer, pl_module)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._score(trainer, pl_module, "test")

    @rank_zero_only
    def _log_image(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        attention_map = self._map(pl_module)
        if attention_map is None:
            return
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("attention/map", attention_map[None].clamp(0, 1), trainer.global_step)

    @rank_zero_only
    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        attention_map = self._map(pl_module)
        if attention_map is not None:
            title = f"global attention map ({attention_map.shape[-2]}x{attention_map.shape[-1]})"
            save_attention_map(attention_map, self.output_dir, title)


class RunConfigInCheckpoint(pl.Callback):
    """Stores the run's resolved config in every checkpoint, so ``eval.py`` can rebuild its data."""

    KEY = "gsa_exp_config"

    def __init__(self, config: dict) -> None:
        super().__init__()
        self.config = config

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        checkpoint[self.KEY] = self.config
