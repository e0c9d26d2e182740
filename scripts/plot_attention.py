#!/usr/bin/env python
"""Regenerate a run's attention figures from its checkpoint alone.

    python scripts/plot_attention.py outputs/train/<run>                       # its checkpoints/best.ckpt
    python scripts/plot_attention.py outputs/train/<run>/checkpoints/last.ckpt --out figures/

The checkpoint carries the model and the run's config, so the data module is rebuilt
from the config (generated again for the synthetic set, read from disk otherwise). Writes
into --out (default: the run directory): attention_map.npy / .png (the shared map, or the
mean map over the test set for local attention and global attention with bank.source=batch),
attention_samples.npz (the maps of a fixed sample of test images) and
attention_overlays.png (the map over sample images of every class); prints the map's
AUROC against the ground-truth region when the data set has one (synthetic).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("GSA_EXP_ROOT", str(ROOT))

from omegaconf import OmegaConf  # noqa: E402

from gsa_exp.attention import NoAttention  # noqa: E402
from gsa_exp.config.resolvers import register_resolvers  # noqa: E402
from gsa_exp.model.classifier import ImageClassifier  # noqa: E402
from gsa_exp.model.metrics import map_auroc  # noqa: E402
from gsa_exp.training.builders import build_datamodule  # noqa: E402
from gsa_exp.training.callbacks import DEFAULT_SAMPLES_PER_CLASS  # noqa: E402
from gsa_exp.training.evaluate import dataset_config, trained_run_config  # noqa: E402
from gsa_exp.training.interpret import map_title, run_map, write_attention_outputs  # noqa: E402
from gsa_exp.training.outputs import save_attention_map  # noqa: E402

CHECKPOINT_NAMES = ("best.ckpt", "last.ckpt")


class PlotError(Exception):
    """A problem the user can fix; printed as one line."""


def find_checkpoint(target: Path) -> Path:
    """The checkpoint file itself, or a run directory's checkpoints/best.ckpt (else last.ckpt)."""
    if target.is_file():
        return target
    if target.is_dir():
        for name in CHECKPOINT_NAMES:
            for candidate in (target / "checkpoints" / name, target / name):
                if candidate.is_file():
                    return candidate
        raise PlotError(f"{target} holds no checkpoints/best.ckpt or checkpoints/last.ckpt; give a .ckpt file instead")
    raise PlotError(f"{target}: no such file or directory (expected a run directory or a .ckpt written by train.py)")


def run_directory(checkpoint: Path) -> Path:
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", metavar="RUN_DIR_OR_CKPT", help="a run directory or a checkpoint file")
    parser.add_argument("--out", metavar="DIR", default=None, help="write the figures here (default: the run directory)")
    parser.add_argument(
        "--samples-per-class", type=int, default=DEFAULT_SAMPLES_PER_CLASS, help="test images per class in the overlays"
    )
    args = parser.parse_args(argv)
    register_resolvers()
    try:
        written = plot(find_checkpoint(Path(args.target).expanduser()), args.out, args.samples_per_class)
    except PlotError as error:
        print(f"plot_attention.py: error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


def plot(checkpoint_path: Path, out: str | None, samples_per_class: int) -> list[Path]:
    try:
        trained = trained_run_config(checkpoint_path)
    except ValueError as error:
        raise PlotError(str(error)) from error
    out_dir = Path(out) if out is not None else run_directory(checkpoint_path)
    model = ImageClassifier.load_from_checkpoint(checkpoint_path, map_location="cpu")
    model.eval()
    if isinstance(model.attention, NoAttention):
        raise PlotError(f"{checkpoint_path} has no attention (attention=none): there is no map to plot")
    try:
        datamodule = build_datamodule(dataset_config(OmegaConf.create({}), trained))
        datamodule.setup("test")
    except (OSError, ValueError) as error:  # the data set is not on this machine
        shared = model.attention.shared_map()
        if shared is None:
            raise PlotError(f"the map of this run is a mean over the test images, which could not be loaded: {error}") from error
        print(f"plot_attention.py: warning: no test images ({error}); writing the map only", file=sys.stderr)
        return save_attention_map(shared, out_dir, map_title(model, None))
    attention_map, title = run_map(model, datamodule)
    written, _ = write_attention_outputs(model, datamodule, attention_map, title, out_dir, samples_per_class)
    if datamodule.region_mask is not None:
        print(f"map AUROC (map vs ground-truth region): {float(map_auroc(attention_map, datamodule.region_mask)):.4f}")
    return written


if __name__ == "__main__":
    sys.exit(main())
