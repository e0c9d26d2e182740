"""CBAM's gates (Woo et al., 2018) and what the two local attention placements share.

Spatial attention pools the features over channels by mean and by max and runs a k x k
convolution (7 x 7) over the two pooled maps; channel attention runs one MLP over the
average- and the max-pooled features. Every gate starts at zero weights and bias
``init_bias`` (A = sigmoid(2) = 0.88 everywhere, like GSA's map), so training starts near
the plain backbone.

The map a run reports for an image is its spatial map (after stages: the mean of the
stages' spatial maps, bilinearly resized to the image size); the map of a data set is the
mean over its images.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gsa_exp.attention.base import AttentionError
from gsa_exp.attention.learned_map import LearnedMapAttention
from gsa_exp.errors import OptionMessage
from gsa_exp.option_schema import check_options
from gsa_exp.options.attention import CbamOptions


class SpatialGate(nn.Module):
    """CBAM's spatial attention logits: mean and max over channels -> k x k convolution (B x 1 x H x W)."""

    def __init__(self, kernel_size: int, init_bias: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)
        nn.init.zeros_(self.conv.weight)
        nn.init.constant_(self.conv.bias, init_bias)

    def forward(self, features: Tensor) -> Tensor:
        pooled = torch.cat([features.mean(dim=1, keepdim=True), features.amax(dim=1, keepdim=True)], dim=1)
        return self.conv(pooled)


class ChannelGate(nn.Module):
    """CBAM's channel attention logits: one MLP over the average- and the max-pooled features, summed (B x C x 1 x 1)."""

    def __init__(self, channels: int, reduction: int, init_bias: float) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1))
        output = self.mlp[-1]
        nn.init.zeros_(output.weight)
        nn.init.constant_(output.bias, init_bias / 2)  # the two pooled descriptors' outputs are added

    def forward(self, features: Tensor) -> Tensor:
        return self.mlp(features.mean(dim=(2, 3), keepdim=True)) + self.mlp(features.amax(dim=(2, 3), keepdim=True))


class LocalMapAttention(LearnedMapAttention):
    """One spatial map per image; the placements differ only in where the gates act."""

    image_specific = True
    placement: str  # the subclass's value of the YAML's ``placement``

    def __init__(
        self,
        *,
        in_channels: int,
        image_size: int,
        num_train: int,
        placement: str,
        kernel_size: int,
        reduction: int,
        init_bias: float,
        **options: Any,
    ) -> None:
        super().__init__(**options)  # temperature, mode, regularization, freeze_after_epochs, lr_multiplier
        check_options(
            CbamOptions, dict(placement=placement, kernel_size=kernel_size, reduction=reduction), AttentionError
        )
        if placement != self.placement:  # built by its class name rather than through attention=local
            raise AttentionError(
                f"$placement={OptionMessage.quoted(placement)}: {type(self).__name__} is placement={self.placement}"
            )
        self.kernel_size, self.reduction, self.init_bias = kernel_size, reduction, float(init_bias)
        self.in_channels, self.image_size = in_channels, image_size
        self._recorded: list[Tensor] = []  # eval mode: the spatial maps of the last forward
        self._input_size: tuple[int, int] = (image_size, image_size)

    def spatial_map(self, gate: SpatialGate, features: Tensor) -> Tensor:
        """The gate's map of ``features``, remembered for the regularization and (eval) the reported map."""
        attention = self.gate(gate(features))
        self.remember(attention)
        if not self.training:
            self._recorded.append(attention.detach())
        return attention

    def start_forward(self, images: Tensor) -> None:
        """A new batch: forget the previous batch's maps and note the image size they are reported at."""
        self._step_maps, self._recorded = [], []
        self._input_size = (images.shape[-2], images.shape[-1])

    def last_image_maps(self) -> Tensor | None:
        if not self._recorded:
            return None
        maps = [
            attention
            if attention.shape[-2:] == self._input_size
            else F.interpolate(attention.float(), size=self._input_size, mode="bilinear", align_corners=False)
            for attention in self._recorded
        ]
        return torch.stack(maps).float().mean(dim=0)[:, 0]
