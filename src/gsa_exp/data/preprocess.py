"""Deterministic preprocessing (once, on uint8 arrays) and batched per-step transforms.

Images stay uint8 in memory; conversion to float, normalisation and augmentation run on
whole batches (on the training device), never per sample through PIL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from gsa_exp.data.files import DataError
from gsa_exp.option_schema import check_options
from gsa_exp.options.data import AugmentOptions


def resize_uint8(images: Tensor, size: int, chunk_size: int = 1024) -> Tensor:
    """Square-resize uint8 N x C x H x W images (antialiased bilinear), in chunks."""
    if tuple(images.shape[-2:]) == (size, size):
        return images
    resized = torch.empty(images.shape[0], images.shape[1], size, size, dtype=torch.uint8)
    for start in range(0, images.shape[0], chunk_size):
        chunk = images[start : start + chunk_size].to(torch.float32)
        out = F.interpolate(chunk, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        resized[start : start + chunk_size] = out.round_().clamp_(0, 255).to(torch.uint8)
    return resized


def match_channels(images: Tensor, channels: int) -> Tensor:
    """Grey to RGB by repetition, or RGB to grey by luminance, so every split has ``channels``."""
    have = images.shape[1]
    if have == channels:
        return images
    if have == 1:
        return images.expand(-1, channels, -1, -1).contiguous()
    if have == 3 and channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (images.float() * weights).sum(dim=1, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)
    raise ValueError(f"cannot convert {have}-channel images to {channels} channels")


@dataclass(frozen=True)
class Normalization:
    """x -> (x - mean) / std for x in [0, 1], per channel (one value means every channel)."""

    mean: Sequence[float]
    std: Sequence[float]

    def __post_init__(self) -> None:
        if any(s <= 0 for s in self.std):
            raise DataError(f"$normalize.std={list(self.std)}: must be positive numbers")

    def per_channel(self, channels: int) -> tuple[list[float], list[float]]:
        def expand(values: Sequence[float], key: str) -> list[float]:
            if len(values) not in (1, channels):
                raise DataError(f"$normalize.{key}={list(values)}: must have 1 or {channels} values (one per channel)")
            return [float(v) for v in values] * (channels // len(values))

        return expand(self.mean, "mean"), expand(self.std, "std")


@dataclass(frozen=True)
class Augmentation:
    """Training-time augmentation, applied per batch. Off by default: aligned anatomy is the premise."""

    hflip: bool  # random horizontal flip with probability 0.5
    max_shift: int  # random translation of up to this many pixels (edges replicated)

    def __post_init__(self) -> None:
        check_options(AugmentOptions, vars(self), DataError, prefix="augment.")

    @property
    def active(self) -> bool:
        return self.hflip or self.max_shift > 0

    def __call__(self, images: Tensor) -> Tensor:
        if self.hflip:
            flip = torch.rand(images.shape[0], 1, 1, 1, device=images.device) < 0.5
            images = torch.where(flip, images.flip(-1), images)
        if self.max_shift > 0:
            images = _random_shift(images, self.max_shift)
        return images


def _random_shift(images: Tensor, max_shift: int) -> Tensor:
    batch, _, height, width = images.shape
    device = images.device
    padded = F.pad(images, (max_shift,) * 4, mode="replicate").permute(0, 2, 3, 1)  # B x H' x W' x C
    offsets = torch.randint(0, 2 * max_shift + 1, (2, batch, 1, 1), device=device)
    rows = torch.arange(height, device=device).view(1, height, 1) + offsets[0]
    cols = torch.arange(width, device=device).view(1, 1, width) + offsets[1]
    samples = torch.arange(batch, device=device).view(batch, 1, 1)
    return padded[samples, rows, cols].permute(0, 3, 1, 2).contiguous()
