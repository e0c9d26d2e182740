"""One training epoch through the framework (Lightning Trainer + the project's module and
data module) against a plain PyTorch loop over the same tensors, model, optimiser and batch size."""

from __future__ import annotations

import contextlib
import copy
import logging
import os
from collections.abc import Callable, Iterator

import torch
from omegaconf import DictConfig, open_dict
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint

from gsa_exp.benchmark.models import autocast, configured_optimizer, prepared_model
from gsa_exp.data.datamodule import ArrayDataModule
from gsa_exp.model.classifier import ImageClassifier
from gsa_exp.training.builders import build_callbacks, build_datamodule, build_trainer

# What the framework epoch runs with, beyond the user's trainer config (stated in the report).
FRAMEWORK_SETTINGS = (
    "the whole trainer.fit() of one epoch, Trainer as train() builds it from the composed config "
    "(progress bar and model summary on: Lightning's defaults, Rich when installed; log_every_n_steps "
    "as configured), logger off, checkpointing off (the ModelCheckpoint callback removed, and the LearningRateMonitor, "
    "which needs a logger; every other configured callback kept), no validation (limit_val_batches=0, num_sanity_val_steps=0); the bare "
    "loop has none of these; the progress bar's output goes to /dev/null"
)


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Keep Lightning's info lines and progress bar off the benchmark's output (both still do their work)."""
    loggers = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def epoch_config(cfg: DictConfig, accelerator: str) -> DictConfig:
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.trainer.accelerator = accelerator
        cfg.trainer.devices = 1
        cfg.trainer.max_epochs = 1
        cfg.trainer.limit_val_batches = 0
        cfg.trainer.num_sanity_val_steps = 0
        cfg.trainer.enable_checkpointing = False
    return cfg


def framework_epoch(cfg: DictConfig, model: ImageClassifier, datamodule: ArrayDataModule) -> Callable[[], None]:
    """``trainer.fit`` for one epoch on a fresh Trainer each call, as ``train()`` builds it."""

    def run() -> None:
        callbacks = [c for c in build_callbacks(cfg) if not isinstance(c, (ModelCheckpoint, LearningRateMonitor))]
        with quiet_lightning():
            trainer = build_trainer(cfg, callbacks, loggers=False)
            trainer.fit(model, datamodule=datamodule)

    return run


def bare_epoch(
    model: ImageClassifier, datamodule: ArrayDataModule, precision: str, device: torch.device
) -> Callable[[], None]:
    """The floor: shuffled mini-batches indexed from the same uint8 tensors, converted, stepped."""
    split = datamodule.split("train")
    images, labels = split.images, split.labels
    batch_size = datamodule.batch_size

    def run() -> None:
        optimizer, scheduler = configured_optimizer(model)
        model.train()
        order = torch.randperm(images.shape[0])
        for start in range(0, images.shape[0] - batch_size + 1, batch_size):  # incomplete last batch dropped
            index = order[start : start + batch_size]
            inputs = images[index].to(device, non_blocking=True).to(torch.float32).div_(255.0)
            targets = labels[index].to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with autocast(precision, device):
                loss, _ = model.training_loss(inputs, targets)
            loss.backward()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()

    return run


def epoch_variants(cfg: DictConfig, device: torch.device) -> tuple[dict[str, Callable[[], None]], int]:
    """The two epoch runners (framework, bare) on twin models, and the training set size.

    The bare loop uses the trainer config's precision (autocast as Lightning does it).
    """
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    cfg = epoch_config(cfg, accelerator)
    datamodule = build_datamodule(cfg.dataset, "fit")
    torch.manual_seed(0)
    model = prepared_model(cfg, datamodule, torch.device("cpu"))  # the Trainer moves it
    torch.manual_seed(0)
    twin = prepared_model(cfg, datamodule, device)  # the same weights (built, not copied: compile-safe)
    variants = {
        "framework": framework_epoch(cfg, model, datamodule),
        "bare": bare_epoch(twin, datamodule, str(cfg.trainer.precision), device),
    }
    return variants, len(datamodule.split("train"))
