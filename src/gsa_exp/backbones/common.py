"""What every torchvision backbone needs: stem choice, input adaptation, weights, size checks."""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torchvision
from torch import Tensor, nn

from gsa_exp.errors import OptionError, OptionMessage

SMALL_INPUT_LIMIT = 64  # stem=auto picks the small stem at or below this image size
OFFLINE_ENV = "GSA_EXP_OFFLINE"  # set to 1 to forbid weight downloads (tests, air-gapped clusters)

Builder = Callable[..., nn.Module]
# What a forward pass raises for an image that does not fit: torch's shape errors, and the size
# assertions of timm's patch embeddings.
SIZE_ERRORS = (RuntimeError, AssertionError)


class BackboneError(OptionError):
    """A backbone cannot be built as configured; the message names the option to change."""

    component = "backbone"


def resolve_stem(stem: str, image_size: int) -> str:
    """'auto' becomes 'small' (3x3 stride 1, no max-pool) for images up to 64 px, else 'imagenet'."""
    if stem == "auto":
        return "small" if image_size <= SMALL_INPUT_LIMIT else "imagenet"
    return stem


LISTED_VARIANTS = 12  # a family with more variants (timm's) names the close matches instead of all


def check_variant(family: str, variant: str, variants: tuple[str, ...]) -> None:
    if variant in variants:
        return
    problem = f"$variant={OptionMessage.quoted(variant)}: not a {family} variant"
    if len(variants) <= LISTED_VARIANTS:
        raise BackboneError(f"{problem}; allowed: {', '.join(variants)}")
    close = difflib.get_close_matches(str(variant), variants, n=5, cutoff=0.6)
    matches = f"close matches: {', '.join(close)}" if close else "no close match"
    raise BackboneError(f"{problem}; {matches} ({len(variants)} variants in all)")


def weights_cache_path(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def load_pretrained_state(variant: str) -> dict[str, Tensor]:
    """torchvision's ImageNet weights for ``variant``, from the local cache or downloaded once.

    Never lets a raw download traceback through: offline or failing downloads end in a
    message naming the file, where it is expected and how to proceed.
    """
    try:
        weights = torchvision.models.get_model_weights(variant).DEFAULT
    except (ValueError, KeyError) as error:
        raise BackboneError(
            f"$pretrained=true: torchvision has no weights for {OptionMessage.quoted(variant)}"
        ) from error
    cached = weights_cache_path(weights.url)
    where = OptionError.literal(f"{cached.name} (from {weights.url}) into {cached.parent}")
    hint = f"put {where} on this machine, or set $pretrained=false"
    if not cached.exists() and os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        raise BackboneError(
            f"$pretrained=true needs the {variant} ImageNet weights, which are not in the cache "
            f"({OptionError.literal(cached)}) and {OFFLINE_ENV} forbids downloading them: {hint}"
        )
    try:
        return weights.get_state_dict(progress=False, check_hash=False)
    except Exception as error:  # urllib, socket and hash errors all mean the same to the user
        raise BackboneError(
            f"$pretrained=true could not obtain the {variant} ImageNet weights "
            f"({type(error).__name__}: {OptionError.literal(error)}); {hint}"
        ) from error


def new_first_conv(old: nn.Conv2d, in_channels: int, small_stem: bool) -> nn.Conv2d:
    """The first convolution for ``in_channels`` inputs and the chosen stem.

    With the ImageNet stem the kernel is kept; pretrained RGB filters are summed over
    colour for grey input so a grey image gives the same response as its RGB copy.
    The small stem is a fresh 3x3 stride-1 convolution.
    """
    if small_stem:
        return nn.Conv2d(in_channels, old.out_channels, 3, stride=1, padding=1, bias=old.bias is not None)
    if in_channels == old.in_channels:
        return old
    conv = nn.Conv2d(
        in_channels,
        old.out_channels,
        old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        bias=old.bias is not None,
    )
    with torch.no_grad():
        summed = old.weight.sum(dim=1, keepdim=True)
        conv.weight.copy_(summed.repeat(1, in_channels, 1, 1) / in_channels)
        if old.bias is not None:
            conv.bias.copy_(old.bias)
    return conv


def smallest_input(build: Builder, kwargs: dict, in_channels: int, upper: int) -> int | None:
    """Smallest square image size up to ``upper`` the network accepts, found on the meta device."""

    def fits(size: int) -> bool:
        with torch.device("meta"):
            network = build(**{**kwargs, "image_size": size, "pretrained": False}).eval()
            try:
                network(torch.empty(1, in_channels, size, size))
            except SIZE_ERRORS:
                return False
        return True

    if not fits(upper):
        return None
    low, high = 1, upper
    while low < high:
        middle = (low + high) // 2
        if fits(middle):
            high = middle
        else:
            low = middle + 1
    return low


def torchvision_network(variant: str, pretrained: bool, **options: Any) -> nn.Module:
    """torchvision's ``variant`` with ImageNet's 1000 classes, its ImageNet weights loaded if asked."""
    model = torchvision.models.get_model(variant, weights=None, **options)
    if pretrained:
        model.load_state_dict(load_pretrained_state(variant))
    return model


def build_checked(build: Builder, **kwargs) -> nn.Module:
    """Build a backbone after proving, without allocating weights, that the image size fits it."""
    image_size, in_channels = kwargs["image_size"], kwargs["in_channels"]
    if in_channels < 1 or kwargs["num_classes"] < 1:
        raise BackboneError(
            f"backbone needs at least one input channel and one class, got in_channels={in_channels}, "
            f"num_classes={kwargs['num_classes']}"
        )
    with torch.device("meta"):
        probe = build(**{**kwargs, "pretrained": False}).eval()
    try:
        probe(torch.empty(1, in_channels, image_size, image_size, device="meta"))
    except SIZE_ERRORS as error:
        minimum = smallest_input(build, kwargs, in_channels, upper=1024)
        allowed = f"at least {minimum}" if minimum else "larger"
        raise BackboneError(
            f"$image_size={image_size} is too small for backbone {kwargs['variant']} "
            f"(stem={kwargs['stem']}): it needs {allowed} px; raise $image_size"
            + (" or use $stem=small" if resolve_stem(kwargs["stem"], image_size) != "small" else "")
        ) from error
    return build(**kwargs)


def split_outputs(outputs: Tensor | tuple) -> tuple[Tensor, list[Tensor]]:
    """Main logits and auxiliary logits (GoogLeNet in train mode returns a named tuple)."""
    if isinstance(outputs, Tensor):
        return outputs, []
    logits, *auxiliary = outputs
    return logits, [aux for aux in auxiliary if aux is not None]
