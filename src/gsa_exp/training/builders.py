"""Objects a run is made of, each built from its config group."""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.loggers import Logger

from gsa_exp.config.options import PerformanceOptions
from gsa_exp.config.validation import DATA_OPTIONS, check_node, option_errors_located
from gsa_exp.data.datamodule import ArrayDataModule
from gsa_exp.data.splits import DataInfo
from gsa_exp.model.classifier import ImageClassifier
from gsa_exp.model.instantiate import as_container

log = logging.getLogger(__name__)


@option_errors_located()
def build_datamodule(dataset: DictConfig, stage: str | None = None) -> ArrayDataModule:
    """The data module of ``dataset``; with ``stage``, also set up (its files read), so a missing or
    malformed file is reported with the config paths (``dataset.root=...``) as a run reports it."""
    datamodule = instantiate(dataset, _convert_="all")
    if stage is not None:
        datamodule.setup(stage)
    return datamodule


@option_errors_located()
def build_model(cfg: DictConfig, info: DataInfo) -> ImageClassifier:
    """The model, with the ``performance`` settings (memory layout, compilation) applied."""
    model = ImageClassifier(
        attention=as_container(cfg.attention),
        backbone=as_container(cfg.backbone),
        optimizer=as_container(cfg.optimizer),
        scheduler=as_container(cfg.get("scheduler")),
        scheduler_interval=cfg.scheduler_interval,
        scheme=as_container(cfg.get("scheme")),
        loss=as_container(cfg.loss),
        monitor=as_container(cfg.monitor),
        data_info=info.to_dict(),
    )
    if cfg.performance.compile and model.neighbours is not None:  # a speed setting: off, no result changes
        log.info("scheme=knn runs no training step and one forward per image: performance.compile is not used")
    model.optimize_for_speed(
        channels_last=cfg.performance.channels_last,
        compile=cfg.performance.compile and model.neighbours is None,
        compile_mode=cfg.performance.compile_mode,
    )
    return model


def configure_batches(datamodule: ArrayDataModule, performance: DictConfig, model: ImageClassifier) -> None:
    """Batches on the device, and padded evaluation batches for a compiled model (one shape to compile).

    Per-batch global attention (``global_batch``) already evaluates in batches of its one
    fixed size (``GlobalBatchAttention.infer``), so it needs no padding. ``scheme=knn`` reads the
    training split once, in order and unaugmented, for its feature bank. The settings are checked
    here too, for callers that apply them without the run's validation (the benchmark).
    """
    check_node(performance, "performance", PerformanceOptions)
    datamodule.configure_batches(
        on_device=performance.data_on_device,
        memory_share=performance.device_memory_share,
        memory_share_option=DATA_OPTIONS["device_memory_share"],  # the config path, in the log line
        pad_eval_batches=model.compiled and model.attention.fixed_batch_size is None,
        train_in_order=model.neighbours is not None,
    )


def _named_nodes(group: DictConfig | None) -> list[Any]:
    """Instantiate every non-null entry of a dict of named components (callbacks, loggers)."""
    if not group:
        return []
    built = [instantiate(node, _convert_="all") for node in group.values() if node is not None]
    return [component for component in built if component is not None]  # a factory may decline (progress bar off)


def build_callbacks(cfg: DictConfig) -> list[pl.Callback]:
    return _named_nodes(cfg.get("callbacks"))


def build_loggers(cfg: DictConfig) -> list[Logger]:
    return _named_nodes(cfg.get("logger"))


def build_trainer(cfg: DictConfig, callbacks: list[pl.Callback], loggers: list[Logger] | bool) -> pl.Trainer:
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers, _convert_="all")
