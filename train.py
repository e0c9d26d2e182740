"""Train a model: ``python train.py backbone=resnet attention=global`` (``-m`` for sweeps)."""

import os
from pathlib import Path

os.environ.setdefault("GSA_EXP_ROOT", str(Path(__file__).resolve().parent))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from gsa_exp.config.resolvers import register_resolvers  # noqa: E402
from gsa_exp.training.train import train  # noqa: E402

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    return metrics.get(cfg.monitor.metric)  # the value a hyper-parameter sweeper optimises


if __name__ == "__main__":
    main()
