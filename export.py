"""Export a model: ``python export.py ckpt_path=.../best.ckpt format=onnx|torchscript`` (``gsa-export`` when installed)."""

import os
from pathlib import Path

os.environ.setdefault("GSA_EXP_ROOT", str(Path(__file__).resolve().parent))  # outputs/ and data/ beside this file

from gsa_exp.cli import export_command  # noqa: E402

if __name__ == "__main__":
    export_command()
