"""Train a model: ``python train.py backbone=resnet attention=global`` (``-m`` for sweeps; ``gsa-train`` when installed)."""

import os
from pathlib import Path

os.environ.setdefault("GSA_EXP_ROOT", str(Path(__file__).resolve().parent))  # outputs/ and data/ beside this file

from gsa_exp.cli import train_command  # noqa: E402

if __name__ == "__main__":
    train_command()
