"""Surviving interruptions: a checkpoint on SIGINT/SIGTERM, and random state that resumes exactly.

Lightning turns SIGTERM into ``SIGTERMException`` at the end of the current batch and
Ctrl+C into ``KeyboardInterrupt``; both reach ``on_exception``. There the run saves
``checkpoints/last.ckpt`` (a consistent state: the batch has finished), writes
``status.json`` and says how to resume. Other exceptions (a bug, a non-finite loss) save
nothing, so the last good checkpoints stay as they were.
"""

from __future__ import annotations

import logging
import os
import random
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from pytorch_lightning.utilities.exceptions import SIGTERMException

from gsa_exp import durable
from gsa_exp.run_files import STATUS_FILE

log = logging.getLogger(__name__)

INTERRUPTIONS = (KeyboardInterrupt, SIGTERMException)


def launch_program(argv0: str | None = None) -> list[str]:
    """How this process was started: ``python train.py`` (a script, as given) or ``gsa-train`` (an installed
    command, by name when that name finds the same file on PATH, else by its path)."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    if argv0.endswith(".py"):
        return ["python", argv0]
    name = Path(argv0).name
    found = shutil.which(name)
    same = found is not None and Path(found).resolve() == Path(argv0).resolve()
    return [name if same else argv0]


class SaveOnInterrupt(pl.Callback):
    """On SIGINT/SIGTERM: save ``last.ckpt``, record the interruption, print the resume command."""

    def __init__(self, *, dirpath: str, run_dir: str) -> None:
        super().__init__()
        self.dirpath = Path(dirpath)
        self.run_dir = Path(run_dir)

    def resume_command(self, checkpoint: Path) -> str:
        """The command line that continues this run in its own directory (so its best-model record holds),
        in the form the run was started with, from the directory it was started in."""
        overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
        kept = [o for o in overrides if not o.startswith(("ckpt_path=", "hydra.run.dir="))]
        arguments = [*kept, f"ckpt_path={checkpoint}", f"hydra.run.dir={self.run_dir}"]
        command = " ".join(shlex.quote(a) for a in [*launch_program(), *arguments])
        return f"cd {shlex.quote(os.getcwd())} && {command}"

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, INTERRUPTIONS) or not trainer.training:
            return
        checkpoint = self.dirpath / "last.ckpt"
        trainer.save_checkpoint(checkpoint)
        if not trainer.is_global_zero:
            return
        signal_name = "SIGINT" if isinstance(exception, KeyboardInterrupt) else "SIGTERM"
        where = f"epoch {trainer.current_epoch}, step {trainer.global_step}"
        command = self.resume_command(checkpoint)
        durable.write_json(
            self.run_dir / STATUS_FILE,
            {
                "status": "interrupted",
                "signal": signal_name,
                "at": where,
                "checkpoint": str(checkpoint),
                "resume": command,
            },
        )
        log.error(
            "Interrupted by %s at %s; saved %s. Resume exactly with:\n  %s", signal_name, where, checkpoint, command
        )


class RandomStateInCheckpoint(pl.Callback):
    """Saves the Python, NumPy and torch random states with every checkpoint and restores them,
    so a resumed run draws the same random numbers (dropout, augmentation) as an uninterrupted one."""

    KEY = "gsa_exp_random_state"

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[self.KEY] = {
            "python": random.getstate(),
            "numpy": _numpy_state_as_plain_values(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        state = checkpoint.get(self.KEY)
        if state is None:
            return
        random.setstate(state["python"])
        numpy_state = state["numpy"]
        np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy(), *numpy_state["rest"]))
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def _numpy_state_as_plain_values() -> dict[str, Any]:
    """NumPy's random state in types that checkpoints load safely (``weights_only=True``)."""
    kind, keys, *rest = np.random.get_state()
    return {
        "kind": kind,
        "keys": torch.from_numpy(keys.copy()),
        "rest": [float(v) if isinstance(v, float) else int(v) for v in rest],
    }
