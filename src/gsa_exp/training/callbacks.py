"""Callbacks that show what the attention learned: maps as images, their AUROC on the ground truth, overlays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar, TQDMProgressBar
from pytorch_lightning.utilities import rank_zero_only
from torch import Tensor

from gsa_exp.attention import shared_map_of
from gsa_exp.errors import OptionError
from gsa_exp.model.metrics import map_auroc
from gsa_exp.option_schema import check_options
from gsa_exp.options.callbacks import AttentionMapOptions, ProgressBarOptions
from gsa_exp.tracking import log_image
from gsa_exp.training.interpret import MapMean, map_title, write_attention_outputs

DEFAULT_SAMPLES_PER_CLASS = 4


class LatestLossShown:
    """Shows the latest training loss in a Lightning progress bar, read from the device only when it redraws.

    Metrics logged with ``prog_bar=True`` on every step are read back by Lightning after every
    step (a device-to-host sync that stalls a GPU step of a few milliseconds); the model logs its
    loss without it, and the bar reads the step's loss itself, every ``refresh_rate`` steps.
    """

    _last_loss: Tensor | None = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, *args: Any) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        self._last_loss = loss if isinstance(loss, Tensor) else None
        super().on_train_batch_end(trainer, pl_module, outputs, *args)  # type: ignore[misc]

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_loss = None
        super().on_train_epoch_start(trainer, pl_module)  # type: ignore[misc]

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)  # type: ignore[misc]
        if self._last_loss is not None and trainer.training:
            metrics["train/loss"] = f"{self._last_loss.item():.3g}"
        return metrics


class LossProgressBar(LatestLossShown, TQDMProgressBar):
    """Lightning's tqdm bar with the latest training loss."""


class RichLossProgressBar(LatestLossShown, RichProgressBar):
    """Lightning's Rich bar with the latest training loss."""


PROGRESS_BARS = {"tqdm": LossProgressBar, "rich": RichLossProgressBar}


def progress_bar(*, enabled: bool, refresh_rate: int, style: str) -> pl.Callback | None:
    """The progress bar (``style``: tqdm | rich), redrawn every ``refresh_rate`` steps; None when the trainer shows none."""
    options = dict(enabled=enabled, refresh_rate=refresh_rate, style=style)
    check_options(ProgressBarOptions, options, OptionError, prefix="callbacks.progress_bar.")
    return PROGRESS_BARS[style](refresh_rate=refresh_rate) if enabled else None


class AttentionMapMonitor(pl.Callback):
    """Logs the run's attention map each validation epoch, scores it, and draws it after testing.

    The run's map is the shared map (global, static), or, for variants whose maps differ
    between images or batches (local; global_batch), the mean over the evaluated images
    of the maps they got (``ImageClassifier.attention_maps`` after each evaluation batch).
    It goes to the loggers (``gsa_exp.tracking``) as ``attention/map`` every validation epoch, and is scored
    against the region that carries the class signal when the data set knows it (the
    synthetic set): ``val/map_auroc``, ``test/map_auroc``. After testing, in
    ``output_dir``: the map of the tested weights (``attention_map.npy`` / ``.png``), the
    maps of a fixed sample of test images (``attention_samples.npz``, ``samples_per_class``
    per class) and their overlays (``attention_overlays.png``, also ``attention/overlays``
    in the loggers).
    """

    def __init__(self, *, output_dir: str, log_images: bool, samples_per_class: int) -> None:
        super().__init__()
        options = dict(log_images=log_images, samples_per_class=samples_per_class)
        check_options(AttentionMapOptions, options, OptionError, prefix="callbacks.attention_map.")
        self.output_dir = Path(output_dir)
        self.log_images = log_images
        self.samples_per_class = samples_per_class
        self._mean = MapMean()
        self._test_map: Tensor | None = None

    def _epoch_map(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Tensor | None:
        shared = shared_map_of(pl_module.attention)
        if shared is not None:
            return shared
        return self._mean.value(lambda tensor: trainer.strategy.reduce(tensor, reduce_op="sum"))

    def _score(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, attention_map: Tensor | None, stage: str
    ) -> None:
        mask = getattr(trainer.datamodule, "region_mask", None)
        if attention_map is not None and mask is not None:
            pl_module.log(f"{stage}/map_auroc", map_auroc(attention_map, mask), on_epoch=True)

    def _collect(self, pl_module: pl.LightningModule) -> None:
        self._mean.add(getattr(pl_module, "attention_maps", None))

    # -- validation ---------------------------------------------------------------------
    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mean = MapMean()

    def on_validation_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any, **kwargs: Any
    ) -> None:
        self._collect(pl_module)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        attention_map = self._epoch_map(trainer, pl_module)
        self._score(trainer, pl_module, attention_map, "val")
        during_fit = trainer.state.fn == "fit" and not trainer.sanity_checking  # not the final re-validation
        if self.log_images and during_fit and attention_map is not None:
            self._log_image(trainer, "attention/map", attention_map[None].clamp(0, 1), "CHW")

    # -- test ---------------------------------------------------------------------------
    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mean, self._test_map = MapMean(), None

    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any, **kwargs: Any) -> None:
        self._collect(pl_module)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._test_map = self._epoch_map(trainer, pl_module)
        self._score(trainer, pl_module, self._test_map, "test")

    @rank_zero_only
    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._test_map is None:
            return
        averaged = None if shared_map_of(pl_module.attention) is not None else self._mean.count
        title = map_title(pl_module, averaged)
        _, overlays = write_attention_outputs(
            pl_module, trainer.datamodule, self._test_map, title, self.output_dir, self.samples_per_class
        )
        if overlays is not None:
            self._log_image(trainer, "attention/overlays", overlays, "HWC")

    @rank_zero_only
    def _log_image(self, trainer: pl.Trainer, tag: str, image: Any, dataformats: str) -> None:
        log_image(trainer.loggers, tag, image, trainer.global_step, dataformats)
