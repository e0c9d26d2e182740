"""torchvision VGG for any channel count, class count and input from 28 px."""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from gsa_exp.backbones.common import (
    SMALL_INPUT_LIMIT,
    BackboneError,
    checked_builder,
    load_pretrained_state,
    new_first_conv,
    resolve_stem,
)

VARIANTS = ("vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn")
HEADS = ("auto", "compact", "classic")


def resolve_head(head: str, image_size: int) -> str:
    """'auto' becomes 'compact' (global pool + linear) up to 64 px: the classic 4096-wide head
    on a 7x7 pool is ~120M parameters of mostly interpolated input at small sizes."""
    if head not in HEADS:
        raise BackboneError(f"backbone.head={head!r} is not one of {list(HEADS)}")
    if head == "auto":
        return "compact" if image_size <= SMALL_INPUT_LIMIT else "classic"
    return head


def _build(
    *,
    variant: str,
    pretrained: bool,
    stem: str,
    head: str,
    dropout: float,
    in_channels: int,
    num_classes: int,
    image_size: int,
) -> nn.Module:
    compact = resolve_head(head, image_size) == "compact"
    if pretrained:
        model = torchvision.models.get_model(variant, weights=None, dropout=dropout)
        model.load_state_dict(load_pretrained_state(variant))
    else:
        model = _fresh_vgg(variant, dropout, materialize_classic_head=not compact)
    small = resolve_stem(stem, image_size) == "small"
    model.features[0] = new_first_conv(model.features[0], in_channels, small_stem=False)
    if small:  # the small-input stem keeps full resolution through the first block
        first_pool = next(i for i, layer in enumerate(model.features) if isinstance(layer, nn.MaxPool2d))
        model.features[first_pool] = nn.Identity()
    if compact:
        model.avgpool = nn.AdaptiveAvgPool2d(1)
        model.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(512, num_classes))
    else:
        model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, num_classes)
    return model


def _fresh_vgg(variant: str, dropout: float, materialize_classic_head: bool) -> nn.Module:
    """A randomly initialised VGG without paying for the ~120M-weight head it is about to lose."""
    if materialize_classic_head or torch.get_default_device().type == "meta":
        return torchvision.models.get_model(variant, weights=None, dropout=dropout)
    with torch.device("meta"):
        model = torchvision.models.get_model(variant, weights=None, dropout=dropout)
    model.classifier = nn.Identity()  # replaced by the compact head below
    model.to_empty(device=torch.device("cpu"))
    for module in model.modules():  # torchvision's VGG initialisation
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            module.reset_parameters()
    return model


build_vgg = checked_builder("vgg", VARIANTS, _build)
