"""Static attention: a free learnable H x W map, shared by all images and not derived from data.

The control for global spatial attention: the map has the same form and place
(A = sigmoid(logits / temperature), the backbone sees x * A), but its logits are free
parameters instead of a pixel classifier over the pixel-feature bank. If ``static``
matches ``global``, the data-derived classifier does not matter; any shared mask would do.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from gsa_exp.attention.base import AttentionError
from gsa_exp.attention.learned_map import LearnedMapAttention, apply_gate
from gsa_exp.attention.registry import register_attention


@register_attention("static", order=30)
class StaticSpatialAttention(LearnedMapAttention):
    """x' = x * A (or x * (1 + A)), A = sigmoid(logits / temperature), logits one free H x W parameter."""

    def __init__(
        self,
        *,
        in_channels: int,
        image_size: int,
        num_train: int,
        init_bias: float,
        **options: Any,
    ) -> None:
        super().__init__(**options)  # temperature, mode, regularization, freeze_after_epochs, lr_multiplier
        self.image_size = image_size
        # Uniform at sigmoid(init_bias / temperature), like GSA: training starts near the plain backbone.
        self.logits = nn.Parameter(torch.full((1, 1, image_size, image_size), float(init_bias)))

    def attention_map(self) -> Tensor:
        """The 1 x 1 x H x W map (cheap enough to recompute every call)."""
        attention = self.gate(self.logits)
        self._step_maps = []
        self.remember(attention)
        return attention

    def shared_map(self) -> Tensor:
        with torch.no_grad():
            return self.gate(self.logits)[0, 0]

    def forward(self, images: Tensor) -> Tensor:
        if images.shape[-2:] != self.logits.shape[-2:]:
            raise AttentionError(
                f"images of {images.shape[-2]}x{images.shape[-1]} do not fit the static attention map of "
                f"{self.image_size}x{self.image_size}; set $image_size={self.image_size}"
            )
        return apply_gate(images, self.attention_map(), self.mode)
