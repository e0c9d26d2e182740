"""What predict.py runs: a checkpoint of train.py or a file of export.py, behind one call.

Both answer ``data_info`` (channels, size, class names: the preprocessing) and turn images in
[0, 1] into class probabilities and the attention map each image got, so predict.py writes the
same ``predictions.csv`` from either.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from gsa_exp.attention import shared_map_of
from gsa_exp.data.splits import DataInfo
from gsa_exp.export import ExportedModel, is_exported
from gsa_exp.model.classifier import ImageClassifier
from gsa_exp.training.evaluate import trained_run_config


class Predictor(Protocol):
    @property
    def data_info(self) -> DataInfo: ...

    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        """Probabilities (N x classes) and maps (N x H x W, None without attention) of images in [0, 1]."""
        ...


class CheckpointModel:
    """A checkpoint of train.py, in eval mode on ``device``."""

    def __init__(self, path: Path, device: str) -> None:
        trained_run_config(path)  # a clear error for checkpoints train.py did not write
        self.device = torch.device(device)
        self.model = ImageClassifier.load_from_checkpoint(path, map_location=self.device).eval()

    @property
    def data_info(self) -> DataInfo:
        return self.model.data_info

    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        model = self.model
        with torch.no_grad():
            probabilities = model.probabilities(model.infer(images.to(self.device))).float().cpu()
            shared = shared_map_of(model.attention)
            maps = model.attention_maps if shared is None else shared.expand(len(images), -1, -1)
        return probabilities, None if maps is None else maps.float().cpu()


def load_predictor(path: Path, device: str) -> Predictor:
    """The model at ``path``: an exported file (by its suffix) or a checkpoint."""
    return ExportedModel.load(path, device) if is_exported(path) else CheckpointModel(path, device)
