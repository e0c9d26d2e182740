"""A run's record in its directory: cleared and marked ``running`` at the start, a heartbeat each
epoch, and the run's own ``last.ckpt`` found again when a killed or preempted job is relaunched."""

from __future__ import annotations

import logging
import os
import time
import zipfile
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only

from gsa_exp import durable
from gsa_exp.run_files import ERROR_FILE, METRICS_FILE, PREDICTIONS_FILE, STATUS_FILE, TARGETS_FILE
from gsa_exp.run_state import RUNNING, now_iso, read_status, running_record
from gsa_exp.training.checkpoints import LAST_NAME

log = logging.getLogger(__name__)

# What a finished run leaves that a new start in the same directory must not let pass for its own.
STALE_RESULTS = (METRICS_FILE, ERROR_FILE)
STALE_RESULT_PATTERNS = (PREDICTIONS_FILE.format(split="*"), TARGETS_FILE.format(split="*"))
CHECKPOINT_DIR = "checkpoints"


def begin_run(run_dir: Path) -> None:
    """Remove what killed writes and an earlier run here left (temp files, status, metrics); mark ``running``."""
    removed = durable.remove_abandoned_temp_files(run_dir)
    if removed:
        log.info("Removed %d temp file(s) of killed writes in %s", len(removed), run_dir)
    for name in STALE_RESULTS:
        (run_dir / name).unlink(missing_ok=True)
    for pattern in STALE_RESULT_PATTERNS:
        for path in run_dir.glob(pattern):
            path.unlink()
    durable.write_json(run_dir / STATUS_FILE, running_record())


def slurm_job() -> bool:
    """Inside a SLURM batch job (a requeued job starts again with its own run directory)."""
    return "SLURM_JOB_ID" in os.environ and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive")


def auto_resume_enabled(setting: Any, skip_completed: bool) -> bool:
    """``auto_resume``: true / false, or ``auto`` = on for skip_completed relaunches and SLURM jobs."""
    if setting == "auto":
        return bool(skip_completed) or slurm_job()
    return setting is True or str(setting).lower() == "true"


def own_last_checkpoint(run_dir: Path) -> Path | None:
    """This run directory's ``checkpoints/last.ckpt`` when it is a whole checkpoint, else None (with a warning
    for a damaged one: such a file predates durable writes, and the run starts from scratch)."""
    path = run_dir / CHECKPOINT_DIR / LAST_NAME
    if not path.is_file():
        return None
    try:
        with zipfile.ZipFile(path) as archive:  # torch.save writes a zip: its central directory ends the file
            archive.namelist()
    except (OSError, zipfile.BadZipFile) as error:
        log.warning(
            "Not resuming from %s: it is not a whole checkpoint (%s); training starts from scratch", path, error
        )
        return None
    return path


class RunHeartbeat(pl.Callback):
    """Updates ``status.json`` of a running run each epoch: ``heartbeat_at``, the epoch, its duration.

    A reader that finds ``running`` with a heartbeat much older than an epoch knows the run is dead
    (``gsa_exp.run_state.why_killed``), even from another host.
    """

    def __init__(self, *, run_dir: str) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self._epoch_started = time.monotonic()

    @rank_zero_only
    def _beat(self, **fields: Any) -> None:
        status = read_status(self.run_dir)
        if status is None or status.get("status") != RUNNING:
            return  # a run that was not started by train() (a test calling fit directly) has no record to keep
        durable.write_json(self.run_dir / STATUS_FILE, {**status, **fields, "heartbeat_at": now_iso()})

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._beat()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_started = time.monotonic()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        seconds = round(time.monotonic() - self._epoch_started, 3)
        self._beat(epoch=trainer.current_epoch, global_step=trainer.global_step, epoch_seconds=seconds)

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._beat(stage="test")
