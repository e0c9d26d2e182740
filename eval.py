"""Evaluate a checkpoint: ``python eval.py ckpt_path=outputs/train/.../checkpoints/best.ckpt`` (``gsa-eval`` when installed)."""

import os
from pathlib import Path

os.environ.setdefault("GSA_EXP_ROOT", str(Path(__file__).resolve().parent))  # outputs/ and data/ beside this file

from gsa_exp.cli import eval_command  # noqa: E402

if __name__ == "__main__":
    eval_command()
