"""The baseline: no attention."""

from __future__ import annotations

from torch import Tensor

from gsa_exp.attention.base import SpatialAttention
from gsa_exp.attention.registry import register_attention


@register_attention("none", order=0)
class NoAttention(SpatialAttention):
    """The paper's baseline: the backbone sees the image unchanged."""

    def __init__(self, *, in_channels: int, image_size: int, num_train: int) -> None:
        # Same construction arguments as every variant, so the model builds them alike.
        super().__init__()

    def forward(self, images: Tensor) -> Tensor:
        return images
