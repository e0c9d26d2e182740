"""Predictions of a trained model for new image files: ``predictions.csv`` and optional map overlays."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor

from gsa_exp.attention import shared_map_of
from gsa_exp.config.validation import option_errors_located, validate_predict_config
from gsa_exp.data.files import DataFormatError, DataNotFoundError, ResolvedPath, listing, literal
from gsa_exp.data.image_files import ARRAY_SUFFIXES, PIL_SUFFIXES, READ_ERRORS, read_image_file
from gsa_exp.data.preprocess import resize_uint8
from gsa_exp.data.splits import MULTICLASS
from gsa_exp.durable import durable_open, save_figure, write_json
from gsa_exp.model.classifier import ImageClassifier
from gsa_exp.model.tta import chosen_flips
from gsa_exp.run_files import PROVENANCE_FILE
from gsa_exp.training.console import print_config
from gsa_exp.training.evaluate import resolve_checkpoint, trained_run_config
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


def input_files(given: str) -> list[Path]:
    """The image file, or the image files of the folder (sorted, sub-folders and hidden files ignored)."""
    where = ResolvedPath.resolve("input", given)
    path = where.path
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputNotFoundError(f"$input: no file or folder at {where.describe()}")
    files = sorted(
        p for p in path.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in SUFFIXES
    )
    if not files:
        raise InputNotFoundError(
            f"$input: {where.describe()} holds no image files (looked for {literal(', '.join(SUFFIXES))})"
        )
    return files


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
    """Writes ``predictions.csv`` (and overlays) into the run directory; returns the CSV's path."""
    validate_predict_config(cfg)
    output_dir = Path(cfg.paths.output_dir)
    if cfg.extras.print_config:
        print_config(cfg)
    write_json(output_dir / PROVENANCE_FILE, provenance())
    checkpoint = resolve_checkpoint(cfg.ckpt_path)
    trained_run_config(checkpoint)  # a clear error for checkpoints train.py did not write
    device = torch.device(
        "cuda" if cfg.device == "auto" and torch.cuda.is_available() else cfg.device.replace("auto", "cpu")
    )
    model = ImageClassifier.load_from_checkpoint(checkpoint, map_location=device).eval()
    model.tta_flips = chosen_flips(cfg.tta, model.attention.fixed_batch_size)
    info = model.data_info
    files = input_files(str(cfg.input))
    images = load_images(files, info.channels, info.image_size)
    probabilities, maps = [], []
    with torch.no_grad():
        for batch in images.split(cfg.batch_size):
            logits = model.infer(batch.to(device).float().div_(255.0))
            probabilities.append(model.probabilities(logits).float().cpu())
            shared = shared_map_of(model.attention)
            per_image = model.attention_maps if shared is None else shared.expand(len(batch), -1, -1)
            maps.append(per_image.float().cpu() if per_image is not None else None)
    scores = torch.cat(probabilities)
    path = write_predictions_csv(output_dir / PREDICTIONS_CSV, files, scores, info.label_names, info.task)
    log.info("Predictions for %d images: %s", len(files), path)
    if cfg.overlays and all(m is not None for m in maps):
        write_overlays(output_dir / "overlays", files, images, torch.cat(maps))
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


def write_overlays(directory: Path, files: list[Path], images: Tensor, maps: Tensor) -> None:
    """Each image with its attention map over it (``<file name>.png``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for file, image, attention in zip(files, images, maps):
        figure, axis = plt.subplots(figsize=(3, 3))
        pixels = image.permute(1, 2, 0).numpy()
        axis.imshow(pixels[..., 0] if pixels.shape[-1] == 1 else pixels, cmap="gray", vmin=0, vmax=255)
        axis.imshow(attention.numpy(), cmap="jet", alpha=0.4, vmin=0, vmax=1)
        axis.set_axis_off()
        axis.set_title(file.name, fontsize=8)
        save_figure(figure, directory / f"{file.name}.png", dpi=100, bbox_inches="tight")
        plt.close(figure)
