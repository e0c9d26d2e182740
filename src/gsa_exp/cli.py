"""The Hydra entry points, shared by ``train.py`` / ``eval.py`` / ``predict.py`` and the installed
commands ``gsa-train`` / ``gsa-eval`` / ``gsa-predict``.

The configs ship inside the package (``gsa_exp/conf``, the project's ``conf/``), so the
commands work from any directory: runs then write to ``./outputs`` and read data from
``./data`` of the directory they are started in (``paths.root_dir``, or ``GSA_EXP_ROOT``).
Heavy modules (torch, Lightning) are imported inside the functions, after Hydra has composed
and validated the config: ``--help`` and a mistyped value answer without loading them.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from gsa_exp.config.resolvers import register_resolvers

CONF_DIR = str(Path(__file__).resolve().parent / "conf")

register_resolvers()


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def train_command(cfg: DictConfig) -> float | None:
    from gsa_exp.training.train import train

    metrics = train(cfg)
    return metrics.get(cfg.monitor.metric)  # the value a hyper-parameter sweeper optimises


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval")
def eval_command(cfg: DictConfig) -> None:
    from gsa_exp.training.evaluate import evaluate

    evaluate(cfg)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="predict")
def predict_command(cfg: DictConfig) -> None:
    from gsa_exp.training.predict import predict

    predict(cfg)
