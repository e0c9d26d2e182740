"""The backbone registry: each family module registers what the generic code needs to know about it.

A family is described the way timm describes a model (``pretrained_cfg``, ``feature_info``):
where its first convolution and classifier heads sit, which pools the small-input stem drops,
and its stages with their widths. ``create_backbone`` then builds any family through one
adapter (``adapter.py``); nothing else in the project names a family. Adding one is a
module here that calls ``register_backbone`` and a YAML in ``conf/backbone/``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from torch import nn

from gsa_exp.backbones.common import BackboneError, build_checked, check_variant
from gsa_exp.option_schema import check_options
from gsa_exp.options import schema_for
from gsa_exp.options.backbone import BackboneOptions
from gsa_exp.registry import Registry


@dataclass(frozen=True)
class Stage:
    """A module whose output is a stage of the network (local attention acts there), and its channels."""

    module: str
    channels: int


@dataclass(frozen=True)
class BackboneFamily:
    """What the generic adapter needs to know about one family (torchvision's, or timm's models)."""

    name: str  # the config choice: backbone=<name>
    variants: tuple[str, ...] | Callable[[], tuple[str, ...]]  # model names (backbone.variant), or where to read them
    network: Callable[..., nn.Module]  # (variant, pretrained, image_size, **options) -> ImageNet-shaped network
    first_conv: str | Callable[[nn.Module], str]  # dotted path of the convolution that sees the image
    heads: tuple[str, ...] | Callable[[nn.Module], tuple[str, ...]]  # paths of the final linear layers
    # (main head first; absent ones, such as heads the options removed, are skipped)
    stages: Callable[[nn.Module], tuple[Stage, ...]]  # the built network's stages, in forward order
    stem_pools: tuple[str, ...] | Callable[[nn.Module], tuple[str, ...]] = ()  # pools the small stem removes
    small_stem: Literal["replace", "keep"] = "replace"  # small stem: a fresh 3x3 stride-1 first convolution,
    # or keep the first convolution (it already is one, as in VGG) and only drop the pools
    order: int = 100  # position in tables and plots: the paper's four first, newer families after
    native_io: bool = False  # the network takes in_channels and num_classes itself (timm adapts its first
    # convolution and builds its head); the adapter then replaces neither


BACKBONES: Registry[BackboneFamily] = Registry("backbone", BackboneError)


def register_backbone(family: BackboneFamily) -> BackboneFamily:
    """Make ``family`` available as ``backbone=<family.name>``."""
    return BACKBONES.register(family.name, family, order=family.order)


def list_backbones() -> tuple[str, ...]:
    """Registered family names in table order (the paper's GoogLeNet, VGG, ResNet, DenseNet first)."""
    return BACKBONES.names()


def backbone_family(name: str) -> BackboneFamily:
    return BACKBONES.get(name)


def create_backbone(
    name: str,
    *,
    variant: str,
    pretrained: bool,
    stem: str,
    in_channels: int,
    num_classes: int,
    image_size: int,
    **options: Any,
) -> nn.Module:
    """The ``name`` family's ``variant`` for the data's channels, classes and image size.

    The image size is checked on the meta device first, so a size that does not fit fails
    with the smallest one that does, before any weight is allocated.
    """
    from gsa_exp.backbones.adapter import assemble  # the adapter imports this module's types

    family = backbone_family(name)
    declared = schema_for("backbone", name) or BackboneOptions  # a family with no options of its own
    check_options(declared, dict(variant=variant, pretrained=pretrained, stem=stem, **options), BackboneError)
    check_variant(name, variant, family.variants() if callable(family.variants) else family.variants)
    return build_checked(
        partial(assemble, family),
        variant=variant,
        pretrained=pretrained,
        stem=stem,
        in_channels=in_channels,
        num_classes=num_classes,
        image_size=image_size,
        **options,
    )
