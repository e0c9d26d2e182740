"""torchvision GoogLeNet (Inception v1) for any channel count, class count and input from 28 px.

In train mode with ``aux_logits`` the network returns its two auxiliary heads too
(a named tuple); the model weights their loss (``loss.aux_weight``). In eval mode it
returns plain logits.
"""

from __future__ import annotations

import torchvision
from torch import nn
from torchvision.models.googlenet import BasicConv2d

from gsa_exp.backbones.common import checked_builder, load_pretrained_state, new_first_conv, resolve_stem

VARIANTS = ("googlenet",)


def _build(
    *,
    variant: str,
    pretrained: bool,
    stem: str,
    aux_logits: bool,
    dropout: float,
    in_channels: int,
    num_classes: int,
    image_size: int,
) -> nn.Module:
    # transform_input assumes ImageNet-normalised RGB; our inputs are normalised by the data module.
    model = torchvision.models.GoogLeNet(
        aux_logits=True, transform_input=False, init_weights=not pretrained, dropout=dropout
    )
    if pretrained:
        model.load_state_dict(load_pretrained_state(variant))
    small = resolve_stem(stem, image_size) == "small"
    if small:
        model.conv1 = BasicConv2d(in_channels, 64, kernel_size=3, stride=1, padding=1)
        model.maxpool1 = nn.Identity()
    else:
        model.conv1.conv = new_first_conv(model.conv1.conv, in_channels, small_stem=False)
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    if aux_logits:
        model.aux1.fc2 = nn.Linear(model.aux1.fc2.in_features, num_classes)
        model.aux2.fc2 = nn.Linear(model.aux2.fc2.in_features, num_classes)
    else:
        model.aux_logits, model.aux1, model.aux2 = False, None, None
    return model


build_googlenet = checked_builder("googlenet", VARIANTS, _build)
