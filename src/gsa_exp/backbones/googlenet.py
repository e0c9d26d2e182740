"""torchvision GoogLeNet (Inception v1): stages ``inception3b``, ``4e``, ``5b``; two auxiliary heads.

In train mode with ``aux_logits`` the network returns its two auxiliary heads too
(a named tuple); the model weights their loss (``loss.aux_weight``). In eval mode it
returns plain logits.
"""

from __future__ import annotations

import torchvision
from torch import nn

from gsa_exp.backbones.common import load_pretrained_state
from gsa_exp.backbones.registry import BackboneFamily, Stage, register_backbone

STAGES = ("inception3b", "inception4e", "inception5b")


def _stages(model: nn.Module) -> tuple[Stage, ...]:
    # An inception module concatenates its four branches: its width is the sum of their last convolutions.
    def width(inception: nn.Module) -> int:
        branches = (inception.branch1, inception.branch2, inception.branch3, inception.branch4)
        return sum([m for m in branch.modules() if isinstance(m, nn.Conv2d)][-1].out_channels for branch in branches)

    return tuple(Stage(name, width(model.get_submodule(name))) for name in STAGES)


def _network(*, variant: str, pretrained: bool, image_size: int, aux_logits: bool, dropout: float) -> nn.Module:
    # transform_input assumes ImageNet-normalised RGB; our inputs are normalised by the data module.
    model = torchvision.models.GoogLeNet(
        aux_logits=True, transform_input=False, init_weights=not pretrained, dropout=dropout
    )
    if pretrained:
        model.load_state_dict(load_pretrained_state(variant))
    if not aux_logits:
        model.aux_logits, model.aux1, model.aux2 = False, None, None
    return model


register_backbone(
    BackboneFamily(
        name="googlenet",
        variants=("googlenet",),
        network=_network,
        first_conv="conv1.conv",
        heads=("fc", "aux1.fc2", "aux2.fc2"),
        stages=_stages,
        stem_pools=("maxpool1",),
        order=10,
    )
)
