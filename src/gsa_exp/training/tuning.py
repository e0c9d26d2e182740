"""The learning-rate range test before training (``tune.lr_find``): Lightning's ``Tuner.lr_find``, its
suggestion made this run's ``optimizer.lr``.

The search trains ``tune.num_training`` steps at rates rising from ``min_lr`` to ``max_lr`` and
suggests the rate where the loss falls fastest; Lightning then restores the weights, optimizer and
loop state it started from, so the run trains from its initial weights. The suggestion reaches the
optimizer the way every rate does: ``configure_optimizers`` reads ``hparams.optimizer["lr"]`` (the
attention's group at that rate x ``attention.lr_multiplier``). It is also written into the run's
config, so checkpoints, TensorBoard's HPARAMS and ``eval.py`` see the rate the run trained with
(``.hydra/config.yaml`` keeps the configured one). A resumed run searches no more: it takes the
rate from the ``lr_find.json`` its run directory holds.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.tuner import Tuner

from gsa_exp.config.validation import ConfigError
from gsa_exp.durable import save_figure, write_json
from gsa_exp.run_files import LR_FIND_JSON, LR_FIND_PNG

log = logging.getLogger(__name__)
SEARCH_KEYS = ("min_lr", "max_lr", "num_training", "mode", "early_stop_threshold")


def check_resumed_search(cfg: DictConfig, output_dir: Path, resume_from: str | None) -> None:
    """A resumed run with ``tune.lr_find`` needs the rate its first attempt found (no new search: the
    checkpoint's optimizer carries the rate it trained with, and a new suggestion would not match it)."""
    if cfg.tune.lr_find and resume_from is not None and not (output_dir / LR_FIND_JSON).is_file():
        raise ConfigError(
            f"Invalid config: tune.lr_find=True: not when resuming from {resume_from} into {output_dir}, which "
            f"holds no {LR_FIND_JSON} of an earlier search; resume into the directory of the run that searched "
            "(hydra.run.dir=<run>), or drop tune.lr_find"
        )


def tune_learning_rate(
    cfg: DictConfig, trainer: pl.Trainer, model: pl.LightningModule, datamodule: Any, output_dir: Path, resuming: bool
) -> float | None:
    """With ``tune.lr_find``: search (or, resuming, read the earlier search), and train at the suggestion."""
    if not cfg.tune.lr_find:
        return None
    record = output_dir / LR_FIND_JSON
    if resuming:
        suggestion = float(json.loads(record.read_text())["suggestion"])
        log.info("Resuming: learning rate %.4g from the earlier search (%s)", suggestion, record)
    else:
        suggestion = _search(cfg, trainer, model, datamodule, output_dir)
    configured = cfg.optimizer.lr
    cfg.optimizer.lr = suggestion  # the run's config: HPARAMS in TensorBoard
    model.hparams.optimizer["lr"] = suggestion  # what configure_optimizers reads; saved in checkpoints
    if model.run_config is not None:
        model.run_config["optimizer"]["lr"] = suggestion  # the config checkpoints carry for eval.py
    log.info("Learning rate %.4g from tune.lr_find (optimizer.lr was %s)", suggestion, configured)
    return suggestion


def _search(
    cfg: DictConfig, trainer: pl.Trainer, model: pl.LightningModule, datamodule: Any, output_dir: Path
) -> float:
    """Lightning's search; ``lr_find.json`` (the suggestion, the settings, every rate and smoothed loss) and ``lr_find.png``."""
    options = {key: cfg.tune[key] for key in SEARCH_KEYS}
    finder = Tuner(trainer).lr_find(model, datamodule=datamodule, update_attr=False, **options)
    suggestion = finder.suggestion()
    losses = [loss if math.isfinite(loss) else None for loss in finder.results["loss"]]  # JSON has no NaN
    if suggestion is None:
        raise RuntimeError(
            f"tune.lr_find: the search recorded {len(losses)} losses, too few for a suggestion (it needs at least "
            "13: the first 10 and the last are left out); raise tune.num_training, or the training steps "
            "that bound it (trainer.max_epochs x batches per epoch), or tune.early_stop_threshold"
        )
    record = {"suggestion": suggestion, "configured_lr": cfg.optimizer.lr, **options}
    write_json(output_dir / LR_FIND_JSON, {**record, "lr": finder.results["lr"], "loss": losses})
    _plot(finder, suggestion, output_dir / LR_FIND_PNG)
    return float(suggestion)


def _plot(finder: Any, suggestion: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = finder.plot(suggest=True)
    figure.axes[0].set_title(f"learning-rate range test: suggestion {suggestion:.3g}", fontsize=9)
    save_figure(figure, path, dpi=100, bbox_inches="tight")
    plt.close(figure)
