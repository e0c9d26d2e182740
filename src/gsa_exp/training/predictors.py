"""What predict.py runs: a checkpoint of train.py or a file of export.py, behind one call.

Both answer ``data_info`` (channels, size, class names: the preprocessing) and turn images in
[0, 1] into class probabilities and the attention map each image got, so predict.py writes the
same ``predictions.csv`` from either.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from gsa_exp.attention import shared_map_of
from gsa_exp.data.splits import DataInfo
from gsa_exp.export import ExportedModel, is_exported
from gsa_exp.model.classifier import ImageClassifier
from gsa_exp.model.tta import chosen_flips
from gsa_exp.training.evaluate import trained_run_config


class Predictor(Protocol):
    @property
    def data_info(self) -> DataInfo: ...

    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        """Probabilities (N x classes) and maps (N x H x W, None without attention) of images in [0, 1]."""
        ...


class CheckpointModel:
    """A checkpoint of train.py, in eval mode on ``device``."""

    def __init__(self, path: Path, device: str, flips: Mapping[str, bool]) -> None:
        trained_run_config(path)  # a clear error for checkpoints train.py did not write
        self.device = torch.device(device)
        self.model = ImageClassifier.load_from_checkpoint(path, map_location=self.device).eval()
        self.model.tta_flips = chosen_flips(flips, self.model.attention.fixed_batch_size)

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


class FlippedViews:
    """Test-time flips (``tta``) for an exported file: the mean of the views' probabilities, as
    ``ImageClassifier.infer`` gives a checkpoint (the maps stay those of the images as given)."""

    def __init__(self, model: Predictor, flips: tuple[tuple[int, ...], ...]) -> None:
        self.model, self.flips = model, flips

    @property
    def data_info(self) -> DataInfo:
        return self.model.data_info

    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        probabilities, maps = self.model(images)
        views = [probabilities, *(self.model(images.flip(dims))[0] for dims in self.flips)]
        return torch.stack(views).mean(dim=0), maps


def load_predictor(path: Path, device: str, flips: Mapping[str, bool]) -> Predictor:
    """The model at ``path``: an exported file (by its suffix) or a checkpoint, with the test-time ``flips``."""
    if not is_exported(path):
        return CheckpointModel(path, device, flips)
    exported = ExportedModel.load(path, device)
    chosen = chosen_flips(flips, None)  # an exported file scores each image alone (global_batch is not exported)
    return FlippedViews(exported, chosen) if chosen else exported
