"""Evaluate a checkpoint: ``python eval.py ckpt_path=outputs/train/.../checkpoints/best.ckpt``."""

import os
from pathlib import Path

os.environ.setdefault("GSA_EXP_ROOT", str(Path(__file__).resolve().parent))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from gsa_exp.config.resolvers import register_resolvers  # noqa: E402
from gsa_exp.training.evaluate import evaluate  # noqa: E402

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
