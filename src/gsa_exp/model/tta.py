"""Test-time augmentation by flips (``tta`` of eval.py and predict.py): each image is also scored
mirrored, and the probabilities of the views are averaged.

Probabilities, not logits, are averaged: the result is the mean of the views' predictive
distributions, a proper ensemble whose scores stay calibrated probabilities, and a view that is
confidently wrong weighs no more than its probability. (The mean of logits is a geometric mean of the
distributions, sharper than any view.) The mean comes back as logits whose softmax (multi-label:
sigmoid) is that mean, ``log p`` (multi-label: ``log p - log(1 - p)``), so the loss, the metrics and the
saved scores need no second path: the cross-entropy of these logits is the negative log-likelihood
of the averaged probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from gsa_exp.errors import OptionError

# view name (the option under ``tta``) -> the image dimensions it mirrors (N x C x H x W)
FLIPS: dict[str, tuple[int, ...]] = {"hflip": (-1,), "vflip": (-2,), "hvflip": (-2, -1)}


class FlipError(OptionError):
    """Flips asked of a model that cannot score mirrored views one by one (options of the ``tta`` group)."""

    component = "tta"


def chosen_flips(options: Mapping[str, bool], fixed_batch_size: int | None) -> tuple[tuple[int, ...], ...]:
    """The flipped views ``options`` turn on (``tta``: hflip, vflip, hvflip), as dimensions to flip.

    A model whose attention makes one map per batch of ``fixed_batch_size`` images (global_batch) is
    refused: a mirrored batch would make a map of its own, and its evaluation context is one loop's.
    """
    chosen = [name for name in FLIPS if options[name]]
    if chosen and fixed_batch_size is not None:
        raise FlipError(
            f"${chosen[0]}=true: not with this checkpoint, whose attention makes one map per batch of "
            f"{fixed_batch_size} images (attention=global_batch, or global attention with bank.source=batch)"
        )
    return tuple(FLIPS[name] for name in chosen)


def averaged_view_logits(views: list[Tensor], multiclass: bool) -> Tensor:
    """Logits whose softmax (multi-label: sigmoid) is the mean over ``views`` of each view's, in float32."""
    stacked = torch.stack([view.float() for view in views])
    log_count = math.log(len(views))
    if multiclass:  # log of the mean softmax, without leaving log space
        return torch.logsumexp(stacked.log_softmax(dim=-1), dim=0) - log_count
    yes = torch.logsumexp(torch.nn.functional.logsigmoid(stacked), dim=0) - log_count  # log of the mean sigmoid
    no = torch.logsumexp(torch.nn.functional.logsigmoid(-stacked), dim=0) - log_count  # log of its complement
    return yes - no
