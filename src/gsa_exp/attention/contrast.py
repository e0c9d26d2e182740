"""A data-derived starting map for GSA: pixels where the classes differ start important.

The pixel classifier's input is, for every pixel, its intensities in labelled training
images; so the labels already say which pixels separate the classes. ``class_separability``
scores each pixel by the share of its intensity variance that the labels explain (the
correlation ratio, one-vs-rest per class or label, summed over channels), and
``fit_linear_readout`` sets the linear classifier's weights so that its initial logits
follow that score. Training then refines the map by back-propagation as usual.
"""

from __future__ import annotations

import torch
from torch import Tensor


def indicator_columns(labels: Tensor) -> Tensor:
    """One 0/1 column per class (multi-class labels N) or per label (multi-label N x L)."""
    if labels.dim() == 2:
        return labels.to(torch.float64)
    return torch.nn.functional.one_hot(labels.long()).to(torch.float64)


def class_separability(images: Tensor, labels: Tensor, chunk_size: int) -> Tensor:
    """H x W: for each pixel, the mean over classes of between-class / total sum of squares."""
    count, channels, height, width = images.shape
    indicators = indicator_columns(labels)
    total = torch.zeros(channels * height * width, dtype=torch.float64)
    squares = torch.zeros_like(total)
    per_class = torch.zeros(indicators.shape[1], total.numel(), dtype=torch.float64)
    for start in range(0, count, chunk_size):
        pixels = images[start : start + chunk_size].reshape(-1, total.numel()).to(torch.float64) / 255
        total += pixels.sum(dim=0)
        squares += (pixels**2).sum(dim=0)
        per_class += indicators[start : start + chunk_size].T @ pixels
    members = indicators.sum(dim=0).view(-1, 1)
    others = count - members
    inside = per_class / members.clamp_min(1)
    outside = (total - per_class) / others.clamp_min(1)
    between = (members * others / count) * (inside - outside) ** 2  # one-vs-rest between-class sum of squares
    within_total = (squares - total**2 / count).clamp_min(1e-12)
    ratio = (between / within_total).mean(dim=0)
    return ratio.view(channels, height, width).sum(dim=0).to(torch.float32)


def standardized(values: Tensor) -> Tensor:
    return (values - values.mean()) / values.std().clamp_min(1e-12)


def fit_linear_readout(bank: Tensor, target: Tensor, ridge: float) -> Tensor:
    """Weights v (K) with v @ bank_rows ~ target (H x W), by ridge regression in float64."""
    rows = bank.reshape(bank.shape[0], -1).to(torch.float64)
    gram = rows @ rows.T
    gram += ridge * gram.diagonal().mean() * torch.eye(gram.shape[0], dtype=torch.float64)
    return torch.linalg.solve(gram, rows @ target.reshape(-1).to(torch.float64)).to(torch.float32)
