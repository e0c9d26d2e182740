"""Predictions of a trained model (a checkpoint or an exported file) for new image files: ``predictions.csv``,
optional map overlays, and accuracy with a confusion matrix for a folder of class sub-folders."""

from __future__ import annotations

import csv
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor

from gsa_exp.config.validation import option_errors_located, validate_predict_config
from gsa_exp.data.files import DataFormatError, DataNotFoundError, ResolvedPath, listing, literal
from gsa_exp.data.image_files import ARRAY_SUFFIXES, PIL_SUFFIXES, READ_ERRORS, read_image_file
from gsa_exp.data.preprocess import resize_uint8
from gsa_exp.data.splits import MULTICLASS
from gsa_exp.durable import durable_open, save_figure, write_json
from gsa_exp.run_files import PROVENANCE_FILE
from gsa_exp.training.console import print_config
from gsa_exp.training.evaluate import resolve_checkpoint
from gsa_exp.training.folder_labels import folder_labels, score_against_folders
from gsa_exp.training.predictors import load_predictor
from gsa_exp.training.provenance import provenance

log = logging.getLogger(__name__)
PREDICTIONS_CSV = "predictions.csv"
SUFFIXES = (*PIL_SUFFIXES, *ARRAY_SUFFIXES)


class InputNotFoundError(DataNotFoundError):
    """No image at ``input``: predict's own option, a top-level key, so the bare name is where it lives."""

    component = None  # not a data-set option: option_errors_located leaves the message as it is


class InputFormatError(DataFormatError):
    """Files of ``input`` that cannot be read as the model's images."""

    component = None


def input_files(given: str) -> tuple[Path, list[Path]]:
    """The folder the files are named from, and the image file or every image file under the folder
    (sub-folders too: a test split laid out as ``<class>/<image>``), sorted; hidden files and folders ignored."""
    where = ResolvedPath.resolve("input", given)
    path = where.path
    if path.is_file():
        return path.parent, [path]
    if not path.is_dir():
        raise InputNotFoundError(f"$input: no file or folder at {where.describe()}")
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and p.suffix.lower() in SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    if not files:
        raise InputNotFoundError(
            f"$input: {where.describe()} holds no image files, sub-folders included (looked for {literal(', '.join(SUFFIXES))})"
        )
    return path, files


def load_images(files: list[Path], channels: int, size: int) -> Tensor:
    """uint8 N x C x size x size, preprocessed as the model's data were; every unreadable file named."""
    images, problems = [], []
    for path in files:
        try:
            images.append(resize_uint8(read_image_file(path, channels)[None], size))
        except READ_ERRORS as error:
            problems.append(f"{path}: {error}")
    if problems:
        raise InputFormatError(listing(problems, f"input files could not be read as {channels}-channel images"))
    return torch.cat(images)


@option_errors_located()
def predict(cfg: DictConfig) -> Path:
    """Writes ``predictions.csv`` (and overlays; metrics against class folders) into the run directory;
    returns the CSV's path."""
    validate_predict_config(cfg)
    output_dir = Path(cfg.paths.output_dir)
    if cfg.extras.print_config:
        print_config(cfg)
    folder, files = input_files(str(cfg.input))
    device = "cuda" if cfg.device == "auto" and torch.cuda.is_available() else cfg.device.replace("auto", "cpu")
    model = load_predictor(resolve_checkpoint(cfg.ckpt_path), device, cfg.tta)
    write_json(output_dir / PROVENANCE_FILE, provenance())
    info = model.data_info
    images = load_images(files, info.channels, info.image_size)
    outputs = [model(batch.float().div_(255.0)) for batch in images.split(cfg.batch_size)]
    scores = torch.cat([probabilities for probabilities, _ in outputs])
    path = write_predictions_csv(output_dir / PREDICTIONS_CSV, files, scores, info.label_names, info.task)
    log.info("Predictions for %d images: %s", len(files), path)
    labels = folder_labels(folder, files, info.label_names, info.task)
    if labels is not None:
        score_against_folders(output_dir, labels, scores, info.label_names)
    if cfg.overlays and all(maps is not None for _, maps in outputs):
        write_overlays(
            output_dir / "overlays", overlay_names(folder, files), images, torch.cat([m for _, m in outputs])
        )
    elif cfg.overlays:
        log.warning("overlays=true: this model has no attention map (attention=none); no overlays drawn")
    return path


def write_predictions_csv(path: Path, files: list[Path], scores: Tensor, label_names: list[str], task: str) -> Path:
    """path, predicted (the arg-max class; multi-label: every label at >= 0.5, joined by ';'), one column per class."""
    with durable_open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "predicted", *label_names])
        for file, row in zip(files, scores.tolist()):
            if task == MULTICLASS:
                predicted = label_names[int(np.argmax(row))]
            else:
                predicted = ";".join(name for name, value in zip(label_names, row) if value >= 0.5)
            writer.writerow([str(file), predicted, *(f"{value:.6g}" for value in row)])
    return path


def overlay_names(folder: Path, files: list[Path]) -> list[Path]:
    """``<sub-folders>/<name>.png`` per input file, its suffix kept only where two files of a folder share a name
    (``scan.png`` and ``scan.npy``: ``scan_png.png``, ``scan_npy.png``)."""
    relative = [file.relative_to(folder) for file in files]
    stems = Counter(path.with_suffix("") for path in relative)
    return [
        path.with_suffix(".png")
        if stems[path.with_suffix("")] == 1
        else path.with_name(f"{path.stem}_{path.suffix[1:]}.png")
        for path in relative
    ]


def write_overlays(directory: Path, names: list[Path], images: Tensor, maps: Tensor) -> None:
    """Each image with its attention map over it, at ``directory / name``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name, image, attention in zip(names, images, maps):
        figure, axis = plt.subplots(figsize=(3, 3))
        pixels = image.permute(1, 2, 0).numpy()
        axis.imshow(pixels[..., 0] if pixels.shape[-1] == 1 else pixels, cmap="gray", vmin=0, vmax=255)
        axis.imshow(attention.numpy(), cmap="jet", alpha=0.4, vmin=0, vmax=1)
        axis.set_axis_off()
        axis.set_title(name.as_posix(), fontsize=8)
        save_figure(figure, directory / name, dpi=100, bbox_inches="tight")
        plt.close(figure)
