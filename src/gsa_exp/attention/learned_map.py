"""What the learned attention variants (global, local, static) share.

Each of them turns logits into a gate A = sigmoid(logits / temperature) in (0, 1) and
applies it as ``x * A`` (``mode=multiply``) or ``x * (1 + A)`` (``mode=residual``); each
offers the same optional regularisers on its spatial maps and the same two-stage
training (every attention parameter frozen from epoch E on).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from gsa_exp.attention.base import AttentionError, SpatialAttention
from gsa_exp.option_schema import checked
from gsa_exp.options.attention import GateOptions


def apply_gate(features: Tensor, gate: Tensor, mode: str) -> Tensor:
    """``features * gate`` (multiply) or ``features * (1 + gate)`` (residual), broadcasting the gate."""
    return features * gate if mode == "multiply" else features * (1 + gate)


class LearnedMapAttention(SpatialAttention):
    """Gate, regularisers and freezing of the variants whose maps are sigmoids of learned logits.

    The variants pass these options (their YAML keys) through as ``**options``: every
    variant has them, with one meaning. Subclasses put every spatial map of the current
    training step into ``_step_maps`` (``remember``), so the regularisers see the maps the
    loss was computed with.

    Each has a map to show (``MapReporting``): a subclass answers ``shared_map`` (one map
    for every image) or ``last_image_maps`` (a map per image), and the other stays None.
    """

    image_specific: bool = False

    def __init__(
        self,
        *,
        temperature: float,
        mode: str,
        regularization: dict[str, float],
        freeze_after_epochs: int | None,
        lr_multiplier: float,
    ) -> None:
        super().__init__()
        gate = checked(
            GateOptions,
            dict(
                temperature=temperature,
                mode=mode,
                regularization=regularization,
                freeze_after_epochs=freeze_after_epochs,
                lr_multiplier=lr_multiplier,
            ),
            AttentionError,
        )
        self.lr_multiplier = float(gate.lr_multiplier)
        self.temperature = float(gate.temperature)
        self.mode = gate.mode
        self.regularization = gate.regularization
        self.freeze_after_epochs = gate.freeze_after_epochs
        self._step_maps: list[Tensor] = []  # the spatial maps of the current training step

    @property
    def meaningful_untrained(self) -> bool:
        return False  # its weights start at zero: every gate a uniform sigmoid(init_bias)

    def __getstate__(self) -> dict[str, Any]:
        """Copies (weight averaging's) and pickles (ddp_spawn's) leave this step's maps out: they hold the
        step's autograd graph, which tensors refuse to copy, and mean nothing outside the step."""
        return {**super().__getstate__(), "_step_maps": []}

    def shared_map(self) -> Tensor | None:
        return None

    def last_image_maps(self) -> Tensor | None:
        return None

    def gate(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits / self.temperature)

    def remember(self, attention_map: Tensor) -> None:
        """Keep a map of this training step for the regulariser (nothing is kept without gradients)."""
        if torch.is_grad_enabled():
            self._step_maps.append(attention_map)

    def regularization_loss(self) -> Tensor | None:
        weights = self.regularization
        if (weights.sparsity == 0 and weights.binarization == 0) or not self._step_maps:
            return None
        terms = [
            weights.sparsity * attention.mean() + weights.binarization * (attention * (1 - attention)).mean()
            for attention in self._step_maps
        ]
        return torch.stack(terms).mean()

    def on_train_epoch_start(self, epoch: int) -> None:
        frozen = self.freeze_after_epochs is not None and epoch >= self.freeze_after_epochs
        self.requires_grad_(not frozen)
