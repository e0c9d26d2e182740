"""CBAM as it is usually used: a block (channel attention, then spatial attention) after every stage.

The stages are the ones the backbone declares (its ``feature_info``, see
``gsa_exp/backbones/registry.py``): e.g. ResNet ``layer1..4``, VGG's feature blocks (at each
max-pool, or where the small stem removed one), DenseNet's ``denseblock1..4``, GoogLeNet's
inception stages (``inception3b``, ``4e``, ``5b``). The blocks are this module's own
parameters (they learn with ``lr_multiplier`` and are saved under ``attention.``); they act
through forward hooks on the stage modules, which ``attach`` registers when the model is
built. The backbone's own structure and state dict stay untouched, and the input passes
through unchanged. Built by ``attention=local attention.placement=stages``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from gsa_exp.attention.base import AttentionError
from gsa_exp.attention.cbam import ChannelGate, LocalMapAttention, SpatialGate
from gsa_exp.attention.learned_map import apply_gate


class _StageHook:
    """Forward hook that passes a stage's output through the attention's block ``index``.

    A plain object (not a closure), so a deep copy of the model hooks into the copied blocks.
    """

    def __init__(self, attention: LocalStageAttention, index: int) -> None:
        self.attention, self.index = attention, index

    def __call__(self, module: nn.Module, args: Any, output: Tensor) -> Tensor:
        return self.attention.stage_block(self.index, output)


class LocalStageAttention(LocalMapAttention):
    """CBAM blocks after every backbone stage; the image itself passes unchanged."""

    placement = "stages"
    acts_inside_backbone = True

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.channel_gates = nn.ModuleList()  # filled by attach(), once the backbone is known
        self.spatial_gates = nn.ModuleList()

    def attach(self, backbone: nn.Module) -> None:
        if len(self.spatial_gates):
            raise RuntimeError("local attention is already attached to a backbone")
        stages = getattr(backbone, "feature_info", None)  # declared by every registered backbone
        if stages is None:
            raise AttentionError(
                f"$placement=stages needs a backbone that declares its stages (feature_info), "
                f"not {type(backbone).__name__}; use $placement=input"
            )
        if not stages:
            raise AttentionError(
                f"$placement=stages needs a backbone whose stages output feature maps; {type(backbone).__name__} "
                "declares none (a vision transformer's blocks hold patch tokens at one resolution, not a map "
                "per stage); use $placement=input"
            )
        for index, stage in enumerate(stages):
            self.channel_gates.append(ChannelGate(stage.channels, self.reduction, self.init_bias))
            self.spatial_gates.append(SpatialGate(self.kernel_size, self.init_bias))
            backbone.get_submodule(stage.module).register_forward_hook(_StageHook(self, index))

    def stage_block(self, index: int, features: Tensor) -> Tensor:
        """CBAM block ``index``: channel attention, then spatial attention."""
        features = apply_gate(features, self.gate(self.channel_gates[index](features)), self.mode)
        return apply_gate(features, self.spatial_map(self.spatial_gates[index], features), self.mode)

    def forward(self, images: Tensor) -> Tensor:
        self.start_forward(images)
        return images  # the blocks act inside the backbone
