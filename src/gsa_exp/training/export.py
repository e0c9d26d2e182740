"""export.py: a checkpoint as one ONNX or TorchScript file, checked against the model before it is kept."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from gsa_exp.config.validation import option_errors_located, validate_export_config
from gsa_exp.durable import write_json
from gsa_exp.export import EXPORT_SUFFIXES, ExportedModel, InferenceGraph, description, write_exported
from gsa_exp.export.formats import example_images
from gsa_exp.model.classifier import ImageClassifier
from gsa_exp.run_files import PROVENANCE_FILE
from gsa_exp.training.console import print_config
from gsa_exp.training.evaluate import resolve_checkpoint, trained_run_config
from gsa_exp.training.provenance import provenance

log = logging.getLogger(__name__)
TOLERANCE = 1e-4  # largest difference of any output from PyTorch's on the check images (float32 rounding: ~1e-7)


@option_errors_located()
def export(cfg: DictConfig) -> Path:
    """Writes ``model.onnx`` or ``model.torchscript`` into the run directory; returns its path."""
    validate_export_config(cfg)
    output_dir = Path(cfg.paths.output_dir)
    if cfg.extras.print_config:
        print_config(cfg)
    checkpoint = resolve_checkpoint(cfg.ckpt_path)
    trained_run_config(checkpoint)  # a clear error for checkpoints train.py did not write
    write_json(output_dir / PROVENANCE_FILE, provenance())
    model = ImageClassifier.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    graph = InferenceGraph(model)
    target = output_dir / f"model{EXPORT_SUFFIXES[cfg.format]}"
    path = write_exported(graph, description(model, graph, str(checkpoint)), cfg.format, target)
    difference = largest_difference(graph, ExportedModel.load(path))
    if not difference <= TOLERANCE:
        path.unlink()
        raise RuntimeError(
            f"the exported {cfg.format} model differs from PyTorch's by {difference:.3g} (more than {TOLERANCE}) "
            "on the check images; the file was removed"
        )
    log.info("Checked: its outputs differ from PyTorch's by at most %.3g on %d images", difference, CHECK_IMAGES)
    return path


CHECK_IMAGES = 5  # not the batch size the graph was traced with (2): the batch axis is checked to be free


def largest_difference(graph: InferenceGraph, exported: ExportedModel) -> float:
    """The largest absolute difference between the file's outputs and the graph's, on random images."""
    images = example_images(graph, CHECK_IMAGES)
    with torch.no_grad():
        expected = graph(images)
    found = [output for output in exported(images) if output is not None]
    return max(float((a - b).abs().max()) for a, b in zip(found, expected))
