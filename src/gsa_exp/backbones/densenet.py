"""torchvision DenseNet for any channel count, class count and input from 28 px."""

from __future__ import annotations

import torchvision
from torch import nn

from gsa_exp.backbones.common import (
    checked_builder,
    load_pretrained_state,
    new_first_conv,
    resolve_stem,
)

VARIANTS = ("densenet121", "densenet161", "densenet169", "densenet201")


def _build(
    *, variant: str, pretrained: bool, stem: str, in_channels: int, num_classes: int, image_size: int
) -> nn.Module:
    model = torchvision.models.get_model(variant, weights=None)
    if pretrained:
        model.load_state_dict(load_pretrained_state(variant))
    small = resolve_stem(stem, image_size) == "small"
    model.features.conv0 = new_first_conv(model.features.conv0, in_channels, small_stem=small)
    if small:
        model.features.pool0 = nn.Identity()
    model.classifier = nn.Linear(model.classifier.in_features, num_classes)
    return model


build_densenet = checked_builder("densenet", VARIANTS, _build)
