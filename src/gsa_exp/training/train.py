"""Fit, then validate and test the best checkpoint, and write the run's outputs."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.exceptions import SIGTERMException

from gsa_exp.config.validation import option_errors_located, scheme_warning, validate_train_config
from gsa_exp.durable import write_json
from gsa_exp.run_files import METRICS_FILE, PROVENANCE_FILE
from gsa_exp.run_state import completion
from gsa_exp.tracking import log_artifacts, log_hparams, tracked_run
from gsa_exp.training.builders import (
    build_callbacks,
    build_datamodule,
    build_loggers,
    build_model,
    build_trainer,
    configure_batches,
)
from gsa_exp.training.console import print_config
from gsa_exp.training.memory import explained_out_of_memory
from gsa_exp.training.outputs import (
    add_confusion_matrix,
    flat_hparams,
    scalar_metrics,
    write_split_predictions,
)
from gsa_exp.training.provenance import provenance
from gsa_exp.training.run_record import auto_resume_enabled, begin_run, own_last_checkpoint
from gsa_exp.training.tuning import check_resumed_search, tune_learning_rate

log = logging.getLogger(__name__)


def best_checkpoint(trainer: pl.Trainer) -> str | None:
    """The best checkpoint's path, or None when none was written (fast_dev_run, no checkpoint callback)."""
    callback = trainer.checkpoint_callback
    path = getattr(callback, "best_model_path", "") if callback is not None else ""
    return path or None


def completed_scalars(output_dir: Path) -> dict[str, float] | None:
    """The metrics of a completed run in ``output_dir`` (as train() returns them), else None; a damaged
    metrics.json is reported and the run trained again."""
    done = completion(output_dir)
    if done.warning:
        log.warning("Not completed: %s; running it again", done.warning)
    if done.metrics is None:
        return None
    return {key: value for key, value in done.metrics.items() if isinstance(value, (int, float))}


def resumable_checkpoint(cfg: DictConfig, output_dir: Path) -> str | None:
    """The run directory's own last.ckpt, when ``auto_resume`` applies (a relaunch of a killed or preempted job)."""
    if not auto_resume_enabled(cfg.auto_resume, cfg.skip_completed):
        return None
    checkpoint = own_last_checkpoint(output_dir)
    if checkpoint is not None:
        log.info("Resuming from this run directory's %s (auto_resume=%s)", checkpoint, cfg.auto_resume)
    return None if checkpoint is None else str(checkpoint)


@option_errors_located()
def train(cfg: DictConfig) -> dict[str, float]:
    """Train one configuration; returns the final validation and test metrics of the best model."""
    validate_train_config(cfg)
    if (warning := scheme_warning(cfg)) is not None:
        log.warning(warning)
    output_dir = Path(cfg.paths.output_dir)
    log.info("Run directory: %s", output_dir)
    if cfg.extras.print_config:
        print_config(cfg)
    if cfg.skip_completed and (previous := completed_scalars(output_dir)) is not None:
        log.info("Already completed in %s: reusing its metrics.json", output_dir)
        return previous
    resume_from = cfg.get("ckpt_path") or resumable_checkpoint(cfg, output_dir)
    check_resumed_search(cfg, output_dir, resume_from)
    begin_run(output_dir)
    write_json(output_dir / PROVENANCE_FILE, provenance())
    if cfg.seed is not None:  # seed=0 is a seed too
        pl.seed_everything(cfg.seed, workers=True)

    datamodule = build_datamodule(cfg.dataset)
    datamodule.setup("fit")
    model = build_model(cfg, datamodule.info)
    configure_batches(datamodule, cfg.performance, model)
    if model.attention.needs_training_data:
        model.attention.prepare(*datamodule.bank_images())

    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    callbacks = build_callbacks(cfg)
    loggers = build_loggers(cfg)
    with tracked_run(loggers):  # a W&B run ends with the job
        trainer = build_trainer(cfg, callbacks, loggers)
        with explained_out_of_memory(cfg):
            tune_learning_rate(cfg, trainer, model, datamodule, output_dir, resuming=resume_from is not None)
            try:
                trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)
            except SIGTERMException as interruption:  # a SystemExit with status 0: make it say "terminated"
                raise SystemExit(128 + signal.SIGTERM) from interruption

            best = best_checkpoint(trainer)
            if best is None:
                log.warning("No checkpoint was written; evaluating the weights at the end of training")
            validated = trainer.validate(model, datamodule=datamodule, ckpt_path=best, verbose=False)
            tested = trainer.test(model, datamodule=datamodule, ckpt_path=best)
        metrics = scalar_metrics({**validated[0], **tested[0]})

        if trainer.is_global_zero:
            write_json(output_dir / METRICS_FILE, metrics)
            add_confusion_matrix(
                output_dir / METRICS_FILE, trainer, model
            )  # test/confusion_matrix: counts, label names
            write_split_predictions(trainer, model, output_dir, ("val", "test"))
            log_hparams(trainer.loggers, flat_hparams(cfg), metrics)
            log_artifacts(trainer.loggers, output_dir)
            log.info("Best checkpoint: %s", best)
            log.info("Metrics: %s", output_dir / METRICS_FILE)
            log.info("Run directory: %s", output_dir)
    return metrics
