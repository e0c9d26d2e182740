"""torchvision ConvNeXt (tiny to large): four stages; the small stem replaces the 4x4 patchify stem."""

from __future__ import annotations

from torch import nn

from gsa_exp.backbones.common import torchvision_network
from gsa_exp.backbones.registry import BackboneFamily, Stage, register_backbone

STAGE_BLOCKS = (1, 3, 5, 7)  # features alternates stages and downsampling layers


def _stages(model: nn.Module) -> tuple[Stage, ...]:
    # A stage's width is that of its blocks' depthwise convolution.
    return tuple(Stage(f"features.{i}", model.features[i][-1].block[0].out_channels) for i in STAGE_BLOCKS)


def _network(*, variant: str, pretrained: bool, image_size: int, stochastic_depth_prob: float) -> nn.Module:
    return torchvision_network(variant, pretrained, stochastic_depth_prob=stochastic_depth_prob)


register_backbone(
    BackboneFamily(
        name="convnext",
        variants=("convnext_tiny", "convnext_small", "convnext_base", "convnext_large"),
        network=_network,
        first_conv="features.0.0",
        heads=("classifier.2",),
        stages=_stages,
        order=60,
    )
)
