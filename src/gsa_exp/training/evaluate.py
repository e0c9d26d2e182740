"""Evaluate a checkpoint on a test split, with no training data needed beyond what it carries."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from gsa_exp.config.validation import option_errors_located, validate_eval_config
from gsa_exp.durable import write_json
from gsa_exp.errors import UsageError
from gsa_exp.model.classifier import RUN_CONFIG_KEY, ImageClassifier
from gsa_exp.model.tta import chosen_flips
from gsa_exp.run_files import METRICS_FILE, PROVENANCE_FILE
from gsa_exp.training.builders import build_datamodule, build_trainer
from gsa_exp.training.callbacks import DEFAULT_SAMPLES_PER_CLASS, AttentionMapMonitor
from gsa_exp.training.console import print_config
from gsa_exp.training.outputs import (
    add_confusion_matrix,
    scalar_metrics,
    write_split_predictions,
)
from gsa_exp.training.provenance import provenance

log = logging.getLogger(__name__)


def resolve_checkpoint(ckpt_path: str | None) -> Path:
    """The checkpoint file; relative paths are taken from the launch directory."""
    if not ckpt_path:
        raise ValueError("ckpt_path is required: python eval.py ckpt_path=outputs/.../checkpoints/best.ckpt")
    path = Path(ckpt_path).expanduser()
    resolved = path if path.is_absolute() else Path.cwd() / path
    if not resolved.is_file():
        raise FileNotFoundError(
            f"ckpt_path={ckpt_path}: no checkpoint file at {resolved} (relative paths are resolved against "
            f"the launch directory {Path.cwd()}); expected a .ckpt written by train.py"
        )
    return resolved


def trained_run_config(checkpoint_path: Path) -> dict:
    """The run config that train.py stored in the checkpoint: what rebuilds its data."""
    try:
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:  # not a file torch.save wrote
        raise UsageError(
            f"{checkpoint_path}: cannot read it as a checkpoint ({str(error).splitlines()[0]}); expected a .ckpt "
            "written by gsa-exp's train.py"
        ) from error
    if not isinstance(checkpoint, dict) or RUN_CONFIG_KEY not in checkpoint:
        raise UsageError(f"{checkpoint_path} was not written by gsa-exp's train.py (no run config inside)")
    return checkpoint[RUN_CONFIG_KEY]


def dataset_config(cfg: DictConfig, trained: dict) -> DictConfig:
    """The checkpoint's dataset config, with the user's overrides on top.

    Selecting a whole data set (``dataset=NAME``) replaces it; ``+dataset.KEY=VALUE``
    changes single keys of the data set the model was trained on.
    """
    overrides = cfg.get("dataset")
    if overrides is not None and "_target_" in overrides:
        return overrides
    base = OmegaConf.create(trained["dataset"])
    return OmegaConf.merge(base, overrides) if overrides is not None else base


@option_errors_located()
def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test ``cfg.ckpt_path`` and write ``metrics.json`` into this evaluation's run directory."""
    validate_eval_config(cfg)
    checkpoint_path = resolve_checkpoint(cfg.get("ckpt_path"))
    output_dir = Path(cfg.paths.output_dir)
    log.info("Evaluating %s; run directory: %s", checkpoint_path, output_dir)
    if cfg.extras.print_config:
        print_config(cfg)
    write_json(output_dir / PROVENANCE_FILE, provenance())
    trained = trained_run_config(checkpoint_path)

    datamodule = build_datamodule(dataset_config(cfg, trained))
    datamodule.setup("test")
    model = ImageClassifier.load_from_checkpoint(checkpoint_path, map_location="cpu")
    model.tta_flips = chosen_flips(cfg.tta, model.attention.fixed_batch_size)
    expected, found = model.data_info, datamodule.info
    for key in ("task", "num_classes", "channels", "image_size"):
        if getattr(expected, key) != getattr(found, key):
            raise UsageError(
                f"the checkpoint was trained with {key}={getattr(expected, key)} but the evaluation data have "
                f"{key}={getattr(found, key)}; choose a data set that matches the checkpoint"
            )

    callbacks = [
        AttentionMapMonitor(output_dir=str(output_dir), log_images=False, samples_per_class=DEFAULT_SAMPLES_PER_CLASS)
    ]
    trainer = build_trainer(cfg, callbacks, loggers=False)
    tested = trainer.test(model, datamodule=datamodule)
    metrics = scalar_metrics(tested[0])
    if trainer.is_global_zero:
        write_json(output_dir / METRICS_FILE, metrics)
        add_confusion_matrix(output_dir / METRICS_FILE, trainer, model)  # test/confusion_matrix: counts, label names
        write_split_predictions(trainer, model, output_dir, ("test",))
        log.info("Metrics: %s", output_dir / METRICS_FILE)
    return metrics
