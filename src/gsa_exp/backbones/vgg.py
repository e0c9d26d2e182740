"""torchvision VGG: a stage ends at each max-pool; the small stem drops the first; compact or classic head."""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from gsa_exp.backbones.common import SMALL_INPUT_LIMIT, torchvision_network
from gsa_exp.backbones.registry import BackboneFamily, Stage, register_backbone


def resolve_head(head: str, image_size: int) -> str:
    """'auto' becomes 'compact' (global pool + linear) up to 64 px: the classic 4096-wide head
    on a 7x7 pool is ~120M parameters of mostly interpolated input at small sizes."""
    if head == "auto":
        return "compact" if image_size <= SMALL_INPUT_LIMIT else "classic"
    return head


def _network(*, variant: str, pretrained: bool, image_size: int, head: str, dropout: float) -> nn.Module:
    compact = resolve_head(head, image_size) == "compact"
    if pretrained:
        model = torchvision_network(variant, pretrained, dropout=dropout)
    else:
        model = _fresh_vgg(variant, dropout, materialize_classic_head=not compact)
    if compact:
        model.avgpool = nn.AdaptiveAvgPool2d(1)
        # The linear is a shape for the adapter, which replaces it with the data's classes; on the meta
        # device it costs neither memory nor random draws (the initialisation stays as it always was).
        model.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(512, 1000, device="meta"))
    return model


def _pools(model: nn.Module) -> list[int]:
    """Indices in ``features`` of every max-pool (nn.Identity where the small stem dropped one)."""
    return [index for index, layer in enumerate(model.features) if isinstance(layer, (nn.MaxPool2d, nn.Identity))]


def _first_pool(model: nn.Module) -> tuple[str, ...]:
    # The small-input stem keeps full resolution through the first block.
    return (f"features.{_pools(model)[0]}",)


def _head(model: nn.Module) -> tuple[str, ...]:
    return (f"classifier.{len(model.classifier) - 1}",)  # the classic head's last linear, or the compact one


def _stages(model: nn.Module) -> tuple[Stage, ...]:
    # Each block ends at a pool; its width is the last convolution before it.
    def width(pool: int) -> int:
        return [layer for layer in model.features[:pool] if isinstance(layer, nn.Conv2d)][-1].out_channels

    return tuple(Stage(f"features.{pool}", width(pool)) for pool in _pools(model))


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


register_backbone(
    BackboneFamily(
        name="vgg",
        variants=("vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"),
        network=_network,
        first_conv="features.0",
        heads=_head,
        stages=_stages,
        stem_pools=_first_pool,
        small_stem="keep",  # VGG's first convolution already is 3x3, stride 1
        order=20,
    )
)
