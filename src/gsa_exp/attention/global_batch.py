"""Per-batch global spatial attention (``attention=global_batch``): the paper's original form of GSA.

The pixel classifier of ``global`` reads the current mini-batch's own intensities instead
of a fixed bank (``bank.batch_bank``): K = batch_size x channels, and the map is recomputed
for every batch and shared by that batch's images only. Every batch must hold exactly
``bank.batch_size`` images: training drops incomplete batches, and evaluation goes through
``infer``, which cuts the images into batches of that size and completes a short last one
with the images evaluated just before it (their outputs are discarded). There is no one
map: ``shared_map()`` is None, and the map a run reports is the mean, over the evaluated
images, of their batches' maps (``last_image_maps``).

``attention=global attention.bank.source=batch``, the spelling from before this variant,
builds it too (``GlobalSpatialAttention.__new__`` calls ``from_global_options``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from gsa_exp.attention.bank import batch_bank
from gsa_exp.attention.base import AttentionError
from gsa_exp.attention.learned_map import LearnedMapAttention, apply_gate
from gsa_exp.attention.pixel_classifier import build_pixel_classifier
from gsa_exp.attention.registry import register_attention
from gsa_exp.option_schema import checked
from gsa_exp.options.attention import BankOptions, BatchBankOptions, BatchClassifierOptions, ClassifierOptions

# The per-batch map has no training split to start from: it starts uniform at init_bias.
_DATA_DERIVED_START = ("init", "init_scale", "init_smoothing")


@register_attention("global_batch", order=11)
class GlobalBatchAttention(LearnedMapAttention):
    """x' = x * A (or x * (1 + A)), A = sigmoid(g_theta(this batch's pixels) / temperature), one A per batch."""

    def __init__(
        self,
        *,
        in_channels: int,
        image_size: int,
        num_train: int,
        bank: dict[str, Any],
        classifier: dict[str, Any],
        init_bias: float,
        **options: Any,
    ) -> None:
        super().__init__(**options)  # temperature, mode, regularization, freeze_after_epochs, lr_multiplier
        if fixed := sorted(set(classifier) & set(_DATA_DERIVED_START)):
            raise AttentionError(
                f"$classifier.{fixed[0]}: per-batch global attention reads no training split to start "
                f"from (its map starts uniform at init_bias); remove $classifier.{', '.join(fixed)}"
            )
        self.bank_options = checked(BatchBankOptions, bank, AttentionError, "bank.")
        self.classifier_options = checked(BatchClassifierOptions, classifier, AttentionError, "classifier.")
        self.image_size = image_size
        depth = self.bank_options.batch_size * in_channels
        self.classifier = build_pixel_classifier(depth, self.classifier_options, init_bias)
        self._image_maps: Tensor | None = None  # eval: the maps of the last forward or infer, one per image
        self._preceding: Tensor | None = None  # infer: the images that complete the next short batch

    @classmethod
    def from_global_options(cls, *, bank: dict[str, Any], classifier: dict[str, Any], **arguments: Any) -> Any:
        """Built from ``global``'s arguments with ``bank.source=batch``, checked as ``global`` checks them.

        The keys this form does not read (the fixed bank's ``num_images``, ``components``,
        ``chunk_size``, ``seed``; the data-derived start) are dropped after the check.
        """
        fixed_bank = checked(BankOptions, bank, AttentionError, "bank.")
        checked(ClassifierOptions, classifier, AttentionError, "classifier.")
        return cls(
            bank=dict(batch_size=fixed_bank.batch_size, standardize=fixed_bank.standardize),
            classifier={key: value for key, value in classifier.items() if key not in _DATA_DERIVED_START},
            **arguments,
        )

    @property
    def fixed_batch_size(self) -> int:
        return self.bank_options.batch_size

    # -- the map ----------------------------------------------------------------------
    def batch_map(self, images: Tensor) -> Tensor:
        """The 1 x 1 x H x W map of this batch, from its own pixels."""
        expected = self.bank_options.batch_size
        if images.shape[0] != expected:
            raise AttentionError(
                f"global attention with $bank.source=batch reads its pixel features from batches of exactly "
                f"$bank.batch_size={expected} images, but got a batch of {images.shape[0]}; set "
                f"$batch_size={expected} (or $bank.batch_size and $batch_size to one new "
                "value), and evaluate through ImageClassifier.infer, which completes short batches"
            )
        attention = self.gate(self.classifier(batch_bank(images, self.bank_options.standardize)))
        self._step_maps = []
        self.remember(attention)
        self._image_maps = None if self.training else attention.detach()[0, 0].expand(expected, -1, -1)
        return attention

    def last_image_maps(self) -> Tensor | None:
        return self._image_maps

    def forward(self, images: Tensor) -> Tensor:
        return apply_gate(images, self.batch_map(images), self.mode)

    # -- evaluation in batches of the fixed size -----------------------------------------
    def infer(self, images: Tensor, logits_of: Callable[[Tensor], Tensor]) -> Tensor:
        """Every image evaluated once, in a batch of exactly ``batch_size`` images of its own split.

        The images are cut into consecutive chunks of n = ``batch_size``; a short chunk is
        completed with the images evaluated just before it in this evaluation loop (with
        repeats of its own images when fewer came before, i.e. the whole split is smaller
        than n), and the outputs of the completing images are discarded. The result does not
        depend on the evaluation batch size as long as it is a multiple of n (checked by the
        config validation). ``reset_eval_context`` starts a new loop.
        """
        size = self.bank_options.batch_size
        logits, maps = [], []
        for chunk in images.split(size):
            count = chunk.shape[0]
            context = chunk if self._preceding is None else torch.cat([self._preceding, chunk])
            batch = context
            while batch.shape[0] < size:
                batch = torch.cat([context, batch])
            logits.append(logits_of(batch[-size:])[-count:])
            if self._image_maps is not None:
                maps.append(self._image_maps[-count:])
            self._preceding = context[-(size - 1) :].detach() if size > 1 else None
        self._image_maps = torch.cat(maps) if maps else None
        return torch.cat(logits)

    def reset_eval_context(self) -> None:
        self._preceding = None
