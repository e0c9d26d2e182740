"""One adapter for every registered family: input channels, stem, heads and declared stages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from gsa_exp.backbones.common import BackboneError, new_first_conv, resolve_stem
from gsa_exp.backbones.registry import BackboneFamily


def has_submodule(model: nn.Module, path: str) -> bool:
    try:
        return isinstance(model.get_submodule(path), nn.Module)
    except AttributeError:  # a head the options removed (e.g. GoogLeNet's aux heads set to None)
        return False


def replace_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, child = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def paths(declared: tuple[str, ...] | Callable[[nn.Module], tuple[str, ...]], model: nn.Module) -> tuple[str, ...]:
    """Module paths a family declares, fixed or read off the built network (VGG's depend on the variant)."""
    return declared(model) if callable(declared) else declared


def first_conv_path(family: BackboneFamily, model: nn.Module) -> str:
    """The family's first convolution, fixed or read off the built network (timm's ``pretrained_cfg``)."""
    return family.first_conv(model) if callable(family.first_conv) else family.first_conv


def has_small_stem(family: BackboneFamily, model: nn.Module, stem: str) -> bool:
    """Whether the small-input stem applies: a network without spatial stages (a vision transformer,
    whose blocks see patch tokens at one resolution) has no convolutional stem to shrink, so
    ``stem=auto`` keeps its own and ``stem=small`` is refused."""
    if family.stages(model):
        return True
    if stem == "small":
        raise BackboneError(
            f"$stem=small: {type(model).__name__} has no convolutional stem to shrink (its blocks see "
            "patch tokens at one resolution, not feature maps); use $stem=auto or $stem=imagenet"
        )
    return False


def assemble(
    family: BackboneFamily,
    *,
    variant: str,
    pretrained: bool,
    stem: str,
    in_channels: int,
    num_classes: int,
    image_size: int,
    **options: Any,
) -> nn.Module:
    """The family's network with the chosen stem, ``in_channels`` inputs, ``num_classes`` outputs.

    The network carries its stages as ``feature_info`` (as timm models do), so that local
    attention finds them without knowing the family; its heads (main first) as
    ``classifier_paths``, so that the training schemes split features from classifier; and
    the modules built fresh in place of the family's own (the small stem's first convolution)
    as ``fresh_modules``, which frozen-feature schemes cannot use with pretrained weights.
    """
    sizes = dict(in_channels=in_channels, num_classes=num_classes) if family.native_io else {}
    model = family.network(variant=variant, pretrained=pretrained, image_size=image_size, **sizes, **options)
    small = resolve_stem(stem, image_size) == "small" and has_small_stem(family, model, stem)
    first_conv = first_conv_path(family, model)
    first = model.get_submodule(first_conv)
    fresh_stem = small and family.small_stem == "replace"
    replace_submodule(model, first_conv, new_first_conv(first, in_channels, fresh_stem))
    if small:
        for path in paths(family.stem_pools, model):
            replace_submodule(model, path, nn.Identity())
    for path in () if family.native_io else paths(family.heads, model):  # a native head has the classes already
        if has_submodule(model, path):
            replace_submodule(model, path, nn.Linear(model.get_submodule(path).in_features, num_classes))
    model.feature_info = family.stages(model)
    model.classifier_paths = tuple(path for path in paths(family.heads, model) if has_submodule(model, path))
    model.fresh_modules = (first_conv,) if fresh_stem else ()
    return model


def classifier_path(model: nn.Module) -> str:
    """The module path of the main classifier head: its input is the feature vector of an image.

    Registered families declare it (``classifier_paths``, set by ``assemble``); a timm model
    built elsewhere names it in ``pretrained_cfg["classifier"]`` (a tuple for two-headed models:
    the first is the main head).
    """
    declared = getattr(model, "classifier_paths", None)
    if not declared:
        config = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
        declared = config.get("classifier")
        declared = (declared,) if isinstance(declared, str) else declared
    if not declared or not has_submodule(model, declared[0]):
        raise ValueError(
            f"{type(model).__name__} declares no classifier head (classifier_paths, or timm's "
            "pretrained_cfg['classifier']): the frozen-feature schemes need to know where features end"
        )
    return declared[0]
