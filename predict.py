"""Predict new images: ``python predict.py ckpt_path=.../best.ckpt input=<image or folder>`` (``gsa-predict`` when installed)."""

import os
from pathlib import Path

os.environ.setdefault("GSA_EXP_ROOT", str(Path(__file__).resolve().parent))  # outputs/ and data/ beside this file

from gsa_exp.cli import predict_command  # noqa: E402

if __name__ == "__main__":
    predict_command()
