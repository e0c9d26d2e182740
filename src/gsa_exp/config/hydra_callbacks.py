"""Hydra callbacks: validate before a run directory exists; record how every job ended.

Configured in conf/hydra/default.yaml. A sweep keeps going when one job fails (Hydra's
launcher runs them all); these callbacks make sure the failure is written down next to
the job and in the sweep's ``sweep_status.jsonl``, so nothing is lost or silent.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from gsa_exp import durable
from gsa_exp.config.validation import (
    ConfigError,
    validate_eval_config,
    validate_export_config,
    validate_predict_config,
    validate_train_config,
)
from gsa_exp.run_files import ERROR_FILE, STATUS_FILE, SWEEP_STATUS_FILE

VALIDATORS = {
    "train": validate_train_config,
    "eval": validate_eval_config,
    "predict": validate_predict_config,
    "export": validate_export_config,
}


class ValidateBeforeRun(Callback):
    """Checks a single run's config before Hydra creates its directory.

    Hydra turns exceptions raised by callbacks into warnings, so a bad config ends the
    process here with its one-line message and exit status 2 (a usage error). Sweep jobs
    are validated inside the job instead, so one bad combination fails alone.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        validator = VALIDATORS.get(str(config.get("task_name")))
        if validator is None:
            return
        try:
            validator(config)
        except ConfigError as error:
            print(f"Error: {error}", file=sys.stderr)
            raise SystemExit(2) from error


class JobStatusRecorder(Callback):
    """Writes ``status.json`` (and ``error.txt`` with the traceback on failure) into each job's
    directory, and one line per job into ``sweep_status.jsonl`` in the sweep directory."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        hydra_cfg = job_return.hydra_cfg.hydra
        run_dir = Path(hydra_cfg.runtime.output_dir)
        failed = job_return.status == JobStatus.FAILED
        record: dict[str, Any] = {
            "job": run_dir.name,
            "overrides": list(job_return.overrides or []),
            "status": "failed" if failed else "completed",
            "run_dir": str(run_dir),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        if failed:
            try:  # the public return_value re-raises the job's exception
                with contextlib.redirect_stderr(io.StringIO()):  # and says "Error executing job", as Hydra does itself
                    _ = job_return.return_value
            except Exception as raised:  # drop the 2 frames the re-raise put in front (this one, return_value's)
                error = raised.with_traceback(raised.__traceback__.tb_next.tb_next)
            record["error"] = f"{type(error).__name__}: {error}".splitlines()[0]
            durable.write_text(run_dir / ERROR_FILE, "".join(traceback.format_exception(error)))  # creates run_dir
        elif isinstance(job_return.return_value, float):
            record["objective"] = job_return.return_value
        durable.write_json(run_dir / STATUS_FILE, record)
        if hydra_cfg.mode == RunMode.MULTIRUN:
            durable.append_line(Path(hydra_cfg.sweep.dir) / SWEEP_STATUS_FILE, json.dumps(record))
