"""The forward an exported file holds: images in [0, 1] -> class probabilities and attention maps.

A shared map (``global``, ``static``) depends on parameters only, so it is computed once here
and kept as a constant: the exported graph applies it with one multiply, as the model does in
eval mode behind its cache (whose key reads tensor addresses, which an exporter cannot trace).
Per-image maps (``local``) are computed by the attention module itself, inside the graph.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from gsa_exp import __version__
from gsa_exp.attention import MapReporting, shared_map_of
from gsa_exp.attention.learned_map import apply_gate
from gsa_exp.backbones import split_outputs
from gsa_exp.data.splits import MULTICLASS
from gsa_exp.errors import UsageError
from gsa_exp.model.classifier import ImageClassifier

INPUT_NAME = "images"
PROBABILITIES = "probabilities"
MAPS = "attention"
DESCRIPTION_KEY = "gsa_exp"  # ONNX metadata_props key / TorchScript extra file (gsa_exp.json)


class ExportError(UsageError):
    """A model that cannot be exported as it is (the message says why and what to do)."""


class InferenceGraph(nn.Module):
    """``probabilities, attention = graph(images)``: the trained model in eval mode, no training state.

    ``images``: float32 N x C x H x W, pixels scaled to [0, 1] (the normalisation is inside).
    ``probabilities``: N x classes, softmax (multi-class) or a sigmoid per label (multi-label),
    as ``predictions.csv`` holds them. ``attention``: N x H x W, the map each image was
    multiplied with; absent for models without attention.
    """

    def __init__(self, model: ImageClassifier) -> None:
        super().__init__()
        attention = model.attention
        if attention.fixed_batch_size is not None:
            raise ExportError(
                f"attention={_attention_name(model)} computes its map from each batch of exactly "
                f"{attention.fixed_batch_size} images, so its output depends on the other images of a batch; "
                "export a model trained with attention=global (its map is fixed after training)"
            )
        # the parts, not the LightningModule: tracing reads every attribute, and a module's ``trainer`` raises
        self.attention, self.backbone = attention.eval(), model.backbone.eval()
        self.register_buffer("mean", model.mean.clone())
        self.register_buffer("std", model.std.clone())
        self.data_info = model.data_info
        self.multiclass = model.data_info.task == MULTICLASS
        shared = shared_map_of(attention)
        self.has_maps = isinstance(attention, MapReporting)
        self.register_buffer("shared_map", None if shared is None else shared.detach().clone().float())
        self.mode = getattr(attention, "mode", "multiply")

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        if self.shared_map is not None:
            gated = apply_gate(images, self.shared_map, self.mode)
            maps = torch.ones_like(images[:, 0]) * self.shared_map  # N x H x W, whatever N is
        else:
            gated = self.attention(images)
        logits, _ = split_outputs(self.backbone((gated - self.mean) / self.std))  # as ImageClassifier.backbone_logits
        probabilities = logits.softmax(dim=1) if self.multiclass else logits.sigmoid()
        if not self.has_maps:
            return (probabilities,)
        if self.shared_map is None:
            maps = self.attention.last_image_maps()
        return probabilities, maps

    @property
    def output_names(self) -> list[str]:
        return [PROBABILITIES, MAPS] if self.has_maps else [PROBABILITIES]


def _attention_name(model: ImageClassifier) -> str:
    return str(model.hparams.attention.get("name", type(model.attention).__name__))


def description(model: ImageClassifier, graph: InferenceGraph, checkpoint: str) -> dict[str, Any]:
    """What a user of the file needs to feed it and read it, stored inside the file."""
    info = model.data_info
    return {
        "format_version": 1,
        "gsa_exp_version": __version__,
        "checkpoint": checkpoint,
        "attention": _attention_name(model),
        "backbone": str(model.hparams.backbone.get("name", "")),
        "data_info": info.to_dict(),  # task, num_classes, channels, image_size, label_names, mean, std
        "class_names": list(info.label_names),
        "input": {
            "name": INPUT_NAME,
            "shape": ["N", info.channels, info.image_size, info.image_size],
            "dtype": "float32",
            "range": [0.0, 1.0],
            "normalization": "inside the graph: (x * attention - mean) / std with the mean and std of data_info",
        },
        "outputs": {
            PROBABILITIES: "N x classes: softmax over classes"
            if graph.multiclass
            else "N x labels: a sigmoid per label",
            **({MAPS: "N x H x W: the attention map each image was multiplied with"} if graph.has_maps else {}),
        },
    }
