"""Local (image-specific) spatial attention, CBAM-style: the attention the paper contrasts GSA with.

CBAM's spatial attention (Woo et al., 2018): pool the features over channels by mean and
by max, run a k x k convolution (7 x 7) over the two pooled maps, and squash with a
sigmoid; every image gets its own map. Two placements:

* ``placement=input``: the map is computed from the image itself and applied to it, at
  the very place where the global map acts (x' = x * A(x)), so the comparison with GSA
  is like for like.
* ``placement=stages``: CBAM as it is usually used: a CBAM block (channel attention, then
  spatial attention) on the output of every stage the backbone declares (its ``feature_info``,
  see ``gsa_exp/backbones/registry.py``): e.g. ResNet ``layer1..4``, VGG's feature blocks
  (at each max-pool, or where the small stem removed one), DenseNet's ``denseblock1..4``,
  GoogLeNet's inception stages (``inception3b``, ``4e``, ``5b``).
  The blocks are this module's own parameters (they learn with ``lr_multiplier`` and are
  saved under ``attention.``); they act through forward hooks on the stage modules, which
  ``attach`` registers when the model is built. The backbone's own structure and state
  dict stay untouched, and the input passes through unchanged.

Every gate starts at zero weights and bias ``init_bias`` (A = sigmoid(2) = 0.88 everywhere,
like GSA's map), so training starts near the plain backbone.

The map a run reports for an image is its spatial map (``placement=stages``: the mean of
the stages' spatial maps, bilinearly resized to the image size); the map of a data set is
the mean over its images.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gsa_exp.attention.base import AttentionError
from gsa_exp.attention.learned_map import LearnedMapAttention, apply_gate
from gsa_exp.attention.registry import register_attention

PLACEMENTS = ("input", "stages")


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


class _StageHook:
    """Forward hook that passes a stage's output through the attention's block ``index``.

    A plain object (not a closure), so a deep copy of the model hooks into the copied blocks.
    """

    def __init__(self, attention: LocalSpatialAttention, index: int) -> None:
        self.attention, self.index = attention, index

    def __call__(self, module: nn.Module, args: Any, output: Tensor) -> Tensor:
        return self.attention.stage_block(self.index, output)


@register_attention("local")
class LocalSpatialAttention(LearnedMapAttention):
    """CBAM-style attention: one spatial map per image, on the input or after every backbone stage."""

    image_specific = True

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
        if placement not in PLACEMENTS:
            raise AttentionError(f"$placement={placement!r} is not one of {list(PLACEMENTS)}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise AttentionError(f"$kernel_size={kernel_size} must be a positive odd integer")
        if reduction < 1:
            raise AttentionError(f"$reduction={reduction} must be a positive integer")
        self.placement = placement
        self.kernel_size, self.reduction, self.init_bias = kernel_size, reduction, float(init_bias)
        self.in_channels, self.image_size = in_channels, image_size
        if placement == "input":
            self.spatial = SpatialGate(kernel_size, self.init_bias)
        else:  # filled by attach(), once the backbone is known
            self.channel_gates = nn.ModuleList()
            self.spatial_gates = nn.ModuleList()
        self._recorded: list[Tensor] = []  # eval mode: the spatial maps of the last forward
        self._input_size: tuple[int, int] = (image_size, image_size)

    # -- placement=stages ---------------------------------------------------------------
    def attach(self, backbone: nn.Module) -> None:
        if self.placement != "stages":
            return
        if len(self.spatial_gates):
            raise RuntimeError("local attention is already attached to a backbone")
        stages = getattr(backbone, "feature_info", None)  # declared by every registered backbone
        if stages is None:
            raise AttentionError(
                f"$placement=stages needs a backbone that declares its stages (feature_info), "
                f"not {type(backbone).__name__}; use $placement=input"
            )
        for index, stage in enumerate(stages):
            self.channel_gates.append(ChannelGate(stage.channels, self.reduction, self.init_bias))
            self.spatial_gates.append(SpatialGate(self.kernel_size, self.init_bias))
            backbone.get_submodule(stage.module).register_forward_hook(_StageHook(self, index))

    def stage_block(self, index: int, features: Tensor) -> Tensor:
        """CBAM block ``index``: channel attention, then spatial attention."""
        features = apply_gate(features, self.gate(self.channel_gates[index](features)), self.mode)
        return apply_gate(features, self._spatial_map(self.spatial_gates[index], features), self.mode)

    # -- maps ----------------------------------------------------------------------------
    def _spatial_map(self, gate: SpatialGate, features: Tensor) -> Tensor:
        attention = self.gate(gate(features))
        self.remember(attention)
        if not self.training:
            self._recorded.append(attention.detach())
        return attention

    def forward(self, images: Tensor) -> Tensor:
        self._step_maps, self._recorded = [], []
        self._input_size = (images.shape[-2], images.shape[-1])
        if self.placement == "stages":
            return images  # the blocks act inside the backbone
        return apply_gate(images, self._spatial_map(self.spatial, images), self.mode)

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
