"""torchvision ResNet: stages ``layer1..4``; the small stem drops the max-pool."""

from __future__ import annotations

from torch import nn

from gsa_exp.backbones.common import torchvision_network
from gsa_exp.backbones.registry import BackboneFamily, Stage, register_backbone


def _stages(model: nn.Module) -> tuple[Stage, ...]:
    # A stage's width is its last block's last batch norm (BasicBlock: bn2, Bottleneck: bn3).
    def width(stage: nn.Module) -> int:
        return [module for module in stage[-1].modules() if isinstance(module, nn.BatchNorm2d)][-1].num_features

    return tuple(Stage(f"layer{i}", width(model.get_submodule(f"layer{i}"))) for i in range(1, 5))


def _network(*, variant: str, pretrained: bool, image_size: int) -> nn.Module:
    return torchvision_network(variant, pretrained)


register_backbone(
    BackboneFamily(
        name="resnet",
        variants=("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"),
        network=_network,
        first_conv="conv1",
        heads=("fc",),
        stages=_stages,
        stem_pools=("maxpool",),
        order=30,
    )
)
