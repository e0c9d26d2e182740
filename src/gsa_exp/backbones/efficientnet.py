"""torchvision EfficientNet (B0-B7): stages where the resolution halves; the small stem keeps it at first."""

from __future__ import annotations

from torch import nn

from gsa_exp.backbones.common import torchvision_network
from gsa_exp.backbones.registry import BackboneFamily, Stage, register_backbone

# The last block of each resolution (strides 2, 4, 8, 16, 32 with the ImageNet stem), as timm's feature_info.
STAGE_BLOCKS = (1, 2, 3, 5, 7)


def _stages(model: nn.Module) -> tuple[Stage, ...]:
    return tuple(Stage(f"features.{i}", model.features[i][-1].out_channels) for i in STAGE_BLOCKS)


def _network(
    *, variant: str, pretrained: bool, image_size: int, dropout: float, stochastic_depth_prob: float
) -> nn.Module:
    return torchvision_network(variant, pretrained, dropout=dropout, stochastic_depth_prob=stochastic_depth_prob)


register_backbone(
    BackboneFamily(
        name="efficientnet",
        variants=tuple(f"efficientnet_b{i}" for i in range(8)),
        network=_network,
        first_conv="features.0.0",
        heads=("classifier.1",),
        stages=_stages,
        order=50,
    )
)
