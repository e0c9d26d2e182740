"""torchvision ResNet for any channel count, class count and input from 28 px."""

from __future__ import annotations

import torchvision
from torch import nn

from gsa_exp.backbones.common import (
    checked_builder,
    load_pretrained_state,
    new_first_conv,
    resolve_stem,
)

VARIANTS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


def _build(
    *, variant: str, pretrained: bool, stem: str, in_channels: int, num_classes: int, image_size: int
) -> nn.Module:
    model = torchvision.models.get_model(variant, weights=None)
    if pretrained:
        model.load_state_dict(load_pretrained_state(variant))
    small = resolve_stem(stem, image_size) == "small"
    model.conv1 = new_first_conv(model.conv1, in_channels, small_stem=small)
    if small:
        model.maxpool = nn.Identity()
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


build_resnet = checked_builder("resnet", VARIANTS, _build)
