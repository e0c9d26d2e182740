#!/usr/bin/env python
"""Regenerate a run's attention figures from its checkpoint alone.

    python scripts/plot_attention.py outputs/train/<run>                       # its checkpoints/best.ckpt
    python scripts/plot_attention.py outputs/train/<run>/checkpoints/last.ckpt --out figures/
    python scripts/plot_attention.py outputs/train/<global run> --gradcam outputs/train/<none run>
    python scripts/plot_attention.py outputs/multirun/<sweep>                  # every job's map in one grid

The checkpoint carries the model and the run's config, so the data module is rebuilt
from the config (generated again for the synthetic set, read from disk otherwise). Writes
into --out (default: the run directory): attention_map.npy / .png (the shared map, or the
mean map over the test set for local attention and per-batch global attention, global_batch),
attention_samples.npz (the maps of a fixed sample of test images) and
attention_overlays.png (the map over sample images of every class); prints the map's
AUROC against the ground-truth region when the data set has one (synthetic).

--gradcam RUN_DIR_OR_CKPT (a run without attention, on the same data set; needs captum:
pip install -e '.[explain]') adds gradcam_comparison.png: for the same test images of every
class, the image, Grad-CAM of that plain backbone, Grad-CAM of the backbone behind this
run's map, and the map.

Given a sweep directory (a Hydra multirun directory, whose job directories hold
.hydra/config.yaml and attention_map.npy), it draws no model: attention_maps_grid.png holds
every job's map, rows backbones, columns data sets (data set: variant when the sweep has
several attention variants), the mean map over the seeds of a cell; attention=none jobs are
skipped, and jobs without a map are named in their panel and printed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("GSA_EXP_ROOT", str(ROOT))

from omegaconf import OmegaConf  # noqa: E402

from gsa_exp.attention import MapReporting  # noqa: E402
from gsa_exp.config.resolvers import register_resolvers  # noqa: E402
from gsa_exp.model.classifier import ImageClassifier  # noqa: E402
from gsa_exp.model.metrics import map_auroc  # noqa: E402
from gsa_exp.training.builders import build_datamodule  # noqa: E402
from gsa_exp.training.callbacks import DEFAULT_SAMPLES_PER_CLASS  # noqa: E402
from gsa_exp.training.evaluate import dataset_config, trained_run_config  # noqa: E402
from gsa_exp.training.explain import ExplainError, require_captum, write_gradcam_comparison  # noqa: E402
from gsa_exp.training.interpret import map_title, run_map, write_attention_outputs  # noqa: E402
from gsa_exp.training.outputs import save_attention_map  # noqa: E402
from gsa_exp.training.sweep_maps import is_sweep_directory, write_map_grid  # noqa: E402

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
    parser.add_argument(
        "target", metavar="RUN_DIR_OR_CKPT", help="a run directory, a checkpoint file or a sweep directory"
    )
    parser.add_argument(
        "--out", metavar="DIR", default=None, help="write the figures here (default: the run directory)"
    )
    parser.add_argument(
        "--samples-per-class", type=int, default=DEFAULT_SAMPLES_PER_CLASS, help="test images per class in the overlays"
    )
    parser.add_argument(
        "--gradcam",
        metavar="RUN_DIR_OR_CKPT",
        default=None,
        help="a run without attention (same data set): adds gradcam_comparison.png (needs captum)",
    )
    args = parser.parse_args(argv)
    register_resolvers()
    target = Path(args.target).expanduser()
    try:
        if _is_sweep(target):
            if args.gradcam is not None:
                raise PlotError(
                    "--gradcam compares two runs: give the attended run's directory or checkpoint, not a sweep"
                )
            written = plot_sweep(target, args.out)
        else:
            plain = None
            if args.gradcam is not None:
                _require_captum()  # before any work
                plain = find_checkpoint(Path(args.gradcam).expanduser())
            written = plot(find_checkpoint(target), args.out, args.samples_per_class, plain)
    except PlotError as error:
        print(f"plot_attention.py: error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


def _is_sweep(target: Path) -> bool:
    """A directory of job directories that is not itself a run (no checkpoints of its own)."""
    return target.is_dir() and not (target / "checkpoints").is_dir() and is_sweep_directory(target)


def _require_captum() -> None:
    try:
        require_captum()
    except ExplainError as error:
        raise PlotError(f"--gradcam: {error}") from error


def plot_sweep(sweep_dir: Path, out: str | None) -> list[Path]:
    """Every job's map in one grid; jobs that should have a map and have none are printed."""
    path, grid = write_map_grid(sweep_dir, Path(out) if out is not None else None)
    for line in grid.missing:
        print(f"plot_attention.py: warning: no map for job {line}", file=sys.stderr)
    if path is None:
        raise PlotError(
            f"{sweep_dir}: no job with attention (only attention=none jobs or none readable): no map to plot"
        )
    rows, columns = grid.layout
    print(f"{rows} backbone(s) x {columns} column(s); skipped {len(grid.skipped)} attention=none job(s)")
    return [path]


def plot(
    checkpoint_path: Path, out: str | None, samples_per_class: int, plain_checkpoint: Path | None = None
) -> list[Path]:
    try:
        trained = trained_run_config(checkpoint_path)
    except ValueError as error:
        raise PlotError(str(error)) from error
    out_dir = Path(out) if out is not None else run_directory(checkpoint_path)
    model = ImageClassifier.load_from_checkpoint(checkpoint_path, map_location="cpu")
    model.eval()
    if not isinstance(model.attention, MapReporting):
        raise PlotError(f"{checkpoint_path} has no attention (attention=none): there is no map to plot")
    try:
        datamodule = build_datamodule(dataset_config(OmegaConf.create({}), trained), "test")
    except (OSError, ValueError) as error:  # the data set is not on this machine
        shared = model.attention.shared_map()
        if shared is None:
            raise PlotError(
                f"the map of this run is a mean over the test images, which could not be loaded: {error}"
            ) from error
        if plain_checkpoint is not None:
            raise PlotError(f"--gradcam needs the test images, which could not be loaded: {error}") from error
        print(f"plot_attention.py: warning: no test images ({error}); writing the map only", file=sys.stderr)
        return save_attention_map(shared, out_dir, map_title(model, None))
    attention_map, title = run_map(model, datamodule)
    written, _ = write_attention_outputs(model, datamodule, attention_map, title, out_dir, samples_per_class)
    if datamodule.region_mask is not None:
        print(f"map AUROC (map vs ground-truth region): {float(map_auroc(attention_map, datamodule.region_mask)):.4f}")
    if plain_checkpoint is not None:
        written.append(plot_gradcam(plain_checkpoint, model, datamodule, out_dir, samples_per_class))
    return written


def plot_gradcam(
    plain_checkpoint: Path, model: ImageClassifier, datamodule: object, out_dir: Path, per_class: int
) -> Path:
    """gradcam_comparison.png: the plain run's and this run's Grad-CAM on this run's test images, and the map."""
    try:
        trained_run_config(plain_checkpoint)
    except ValueError as error:
        raise PlotError(f"--gradcam: {error}") from error
    plain = ImageClassifier.load_from_checkpoint(plain_checkpoint, map_location="cpu")
    try:
        path, _ = write_gradcam_comparison(plain, model, datamodule, out_dir, per_class)
    except ExplainError as error:
        raise PlotError(f"--gradcam: {error}") from error
    return path


if __name__ == "__main__":
    sys.exit(main())
