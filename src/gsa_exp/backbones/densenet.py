"""torchvision DenseNet: stages ``denseblock1..4``; the small stem drops ``pool0``."""

from __future__ import annotations

from torch import nn

from gsa_exp.backbones.common import torchvision_network
from gsa_exp.backbones.registry import BackboneFamily, Stage, register_backbone


def _stages(model: nn.Module) -> tuple[Stage, ...]:
    # A dense block's output width is what the next norm layer normalises (transition i, or norm5).
    norms = [f"features.transition{i}.norm" for i in range(1, 4)] + ["features.norm5"]
    return tuple(
        Stage(f"features.denseblock{i}", model.get_submodule(norm).num_features) for i, norm in enumerate(norms, 1)
    )


def _network(*, variant: str, pretrained: bool, image_size: int) -> nn.Module:
    return torchvision_network(variant, pretrained)


register_backbone(
    BackboneFamily(
        name="densenet",
        variants=("densenet121", "densenet161", "densenet169", "densenet201"),
        network=_network,
        first_conv="features.conv0",
        heads=("classifier",),
        stages=_stages,
        stem_pools=("features.pool0",),
        order=40,
    )
)
