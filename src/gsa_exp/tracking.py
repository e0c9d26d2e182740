"""What a run records besides scalars, for every logger it has: images, hyper-parameters with the final
metrics, the run's files, and the end of the tracked run.

Lightning's loggers share ``log_metrics`` and ``log_hyperparams``, not images or files, so each
kind has one function here that dispatches on the logger's type; the model, the callbacks and
``train()`` call these and never a logger's own API.

* TensorBoard: images in its event files, HPARAMS (the compared hyper-parameters with the final
  metrics' tags); no files (they lie beside its event files, in the run directory).
* MLflow: images as step-indexed image artifacts, the hyper-parameters as params, the run's files
  as artifacts (checkpoints stay out: ``log_model`` is MLflow's own option for them).
* W&B: images as media, the hyper-parameters in the run's config, the final metrics in its
  summary, the run's files saved into the run; the run is finished with the job (an in-process
  sweep would otherwise log every job into the first job's run).
* CSV: nothing beyond Lightning's metrics.csv and hparams.yaml: its directory sits inside the run
  directory, which already holds every file and figure, so copies would add nothing.

Any other logger gets its scalars from Lightning, and one log line says what it does not get.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from pytorch_lightning.loggers import CSVLogger, Logger, MLFlowLogger, TensorBoardLogger, WandbLogger
from pytorch_lightning.loggers.logger import DummyLogger
from torch import Tensor

from gsa_exp.durable import is_temp_file
from gsa_exp.run_files import STATUS_FILE

log = logging.getLogger(__name__)

IMAGE_LOGGERS = (TensorBoardLogger, MLFlowLogger, WandbLogger)
KNOWN_LOGGERS = (*IMAGE_LOGGERS, CSVLogger, DummyLogger)  # DummyLogger: fast_dev_run's stand-in
CONFIG_DIR = ".hydra"  # the run's composed config, overrides and Hydra settings
_told: set[type] = set()


def _unknown(logger: Logger) -> None:
    """Says once per logger type that a logger this module does not know gets the scalars only."""
    if not isinstance(logger, KNOWN_LOGGERS) and type(logger) not in _told:
        _told.add(type(logger))
        name = type(logger).__name__
        log.info("%s gets the scalars only (images, hparams and files go to TensorBoard, MLflow, W&B)", name)


def takes_images(loggers: Sequence[Logger]) -> bool:
    """Whether any logger records images (so a figure is drawn only when someone takes it)."""
    return any(isinstance(logger, IMAGE_LOGGERS) for logger in loggers)


def _height_width_channels(image: Tensor | np.ndarray, dataformats: str) -> np.ndarray:
    array = image.detach().float().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image)
    if dataformats == "CHW":
        array = array.transpose(1, 2, 0)
    return array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array  # one channel: a grey image


def log_image(
    loggers: Sequence[Logger], tag: str, image: Tensor | np.ndarray, step: int, dataformats: str = "HWC"
) -> None:
    """``image`` (``dataformats`` CHW or HWC, values in [0, 1] or uint8) under ``tag`` at ``step``."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(tag, image, step, dataformats=dataformats)
        elif isinstance(logger, MLFlowLogger):
            logger.experiment.log_image(logger.run_id, _height_width_channels(image, dataformats), key=tag, step=step)
        elif isinstance(logger, WandbLogger):
            logger.log_image(key=tag, images=[_height_width_channels(image, dataformats)], step=step)
        else:
            _unknown(logger)


def log_hparams(loggers: Sequence[Logger], params: dict[str, Any], metrics: dict[str, float]) -> None:
    """The run's compared hyper-parameters, with its final metrics (already logged as scalars)."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            _tensorboard_hparams(logger, params, metrics)
        elif isinstance(logger, (MLFlowLogger, WandbLogger)):
            logger.log_hyperparams(params)
            if isinstance(logger, WandbLogger):
                logger.experiment.summary.update(metrics)
        else:
            _unknown(logger)


def _tensorboard_hparams(logger: TensorBoardLogger, params: dict[str, Any], metrics: dict[str, float]) -> None:
    """TensorBoard's HPARAMS session for this run, listing the final metrics by their logged tags.

    The metric values are the scalars already logged under those tags, so nothing is logged twice and no
    placeholder metric appears. The session goes to an event file of its own in the logger's directory.
    """
    from torch.utils.tensorboard.summary import hparams
    from torch.utils.tensorboard.writer import FileWriter

    writer = FileWriter(logger.log_dir)
    for summary in hparams(params, metrics):  # the experiment, session start and session end
        writer.add_summary(summary)
    writer.close()


def run_files(run_dir: Path) -> list[Path]:
    """The files a run leaves at the top of its directory, and its config: what a tracking server keeps.

    Not status.json (it says "running" until the job ends) nor the job's log (still being
    written); sub-directories (checkpoints, the loggers' own) stay out.
    """
    top = [path for path in sorted(run_dir.iterdir()) if path.is_file() and path.suffix != ".log"]
    config = sorted((run_dir / CONFIG_DIR).glob("*.yaml"))
    return [path for path in [*top, *config] if path.name != STATUS_FILE and not is_temp_file(path)]


def log_artifacts(loggers: Sequence[Logger], run_dir: Path) -> None:
    """The run's files (``run_files``) as artifacts of the tracked run, at their paths in the run directory."""
    files = run_files(run_dir)
    for logger in loggers:
        if isinstance(logger, MLFlowLogger):
            for path in files:
                folder = path.parent.relative_to(run_dir).as_posix()
                logger.experiment.log_artifact(logger.run_id, str(path), None if folder == "." else folder)
        elif isinstance(logger, WandbLogger):
            for path in files:
                logger.experiment.save(str(path), base_path=str(run_dir), policy="now")
        else:
            _unknown(logger)


@contextmanager
def tracked_run(loggers: Sequence[Logger]) -> Iterator[None]:
    """Ends each logger's tracked run with the job, failed when the job raises.

    W&B: ``finish`` can return before its service has written the run's records; ``teardown``
    waits for that, so each job's offline run is whole on disk when the job ends.
    """
    failed = True
    try:
        yield
        failed = False
    finally:
        if any(isinstance(logger, WandbLogger) for logger in loggers):
            import wandb

            if wandb.run is not None:
                wandb.run.finish(exit_code=1 if failed else 0)
            wandb.teardown()
