"""The Hydra entry points, shared by ``train.py`` / ``eval.py`` / ``predict.py`` / ``export.py`` and the
installed commands ``gsa-train`` / ``gsa-eval`` / ``gsa-predict`` / ``gsa-export``.

The configs ship inside the package (``gsa_exp/conf``, the project's ``conf/``), so the
commands work from any directory: runs then write to ``./outputs`` and read data from
``./data`` of the directory they are started in (``paths.root_dir``, or ``GSA_EXP_ROOT``).
Heavy modules (torch, Lightning) are imported inside the functions, after Hydra has composed
and validated the config: ``--help`` and a mistyped value answer without loading them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from gsa_exp.config.resolvers import register_resolvers
from gsa_exp.config.validation import ConfigError
from gsa_exp.errors import OptionMessage, UsageError

CONF_DIR = str(Path(__file__).resolve().parent / "conf")

register_resolvers()


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def train_command(cfg: DictConfig) -> float | None:
    from gsa_exp.training.train import train

    metrics = train(cfg)
    return metrics.get(cfg.monitor.metric)  # the value a hyper-parameter sweeper optimises


@contextmanager
def usage_errors_end_the_run() -> Iterator[None]:
    """Bad input found while a single run works (a missing image folder, a file that is not a checkpoint,
    data that do not fit the model) ends it as a bad config value does: its message on stderr, exit status 2,
    no traceback. In a sweep the job fails alone, as any other, and the sweep goes on."""
    try:
        yield
    except (ConfigError, OptionMessage, UsageError) as error:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        print(f"Error: {error}", file=sys.stderr)
        raise SystemExit(2) from error


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval")
def eval_command(cfg: DictConfig) -> None:
    from gsa_exp.training.evaluate import evaluate

    with usage_errors_end_the_run():
        evaluate(cfg)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="predict")
def predict_command(cfg: DictConfig) -> None:
    from gsa_exp.training.predict import predict

    with usage_errors_end_the_run():
        predict(cfg)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="export")
def export_command(cfg: DictConfig) -> None:
    from gsa_exp.training.export import export

    with usage_errors_end_the_run():
        export(cfg)
