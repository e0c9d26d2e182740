"""timm's models as one family: ``backbone=timm backbone.variant=<any name of timm.list_models()>``.

timm declares per model what the adapter needs (``pretrained_cfg["first_conv"]``, ``feature_info``:
each stage's module, width and reduction), adapts the first convolution to the data's channels
and builds the head for its classes itself (so the adapter replaces neither), and takes the
image size of models that have one (ViTs' position embeddings). timm is imported on first use:
the other families, ``--help`` and the config check of any other backbone never pay its import.
"""

from __future__ import annotations

import inspect
import os
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gsa_exp.backbones.common import OFFLINE_ENV, BackboneError, weights_cache_path
from gsa_exp.backbones.registry import BackboneFamily, Stage, register_backbone
from gsa_exp.errors import OptionError

STEM_REDUCTION = 4  # the ImageNet stem's reduction before the first real stage (stride-2 conv + stride-2 pool)
HUB_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm fetches from a Hugging Face repository


@cache
def variants() -> tuple[str, ...]:
    """Every architecture timm builds, and every architecture.tag that names its weights."""
    import timm

    return tuple(sorted({*timm.list_models(), *timm.list_models(pretrained=True)}))


@cache
def constructor_options(variant: str) -> frozenset[str]:
    """The keyword arguments the variant's model class takes (built once on the meta device to find it)."""
    import timm

    with torch.device("meta"):
        model = timm.create_model(variant, pretrained=False)
    return frozenset(inspect.signature(type(model).__init__).parameters)


def stages(model: nn.Module) -> tuple[Stage, ...]:
    """timm's ``feature_info`` as stages, when they are feature maps at growing reductions.

    A vision transformer declares its blocks, all at the patch size's reduction and holding
    tokens, and models such as Swin give channels-last maps: local attention cannot act after
    either, so they declare no stages.
    """
    info = timm_stages(model)
    if len({entry["reduction"] for entry in info}) < 2 or getattr(model, "output_fmt", "NCHW") != "NCHW":
        return ()
    return tuple(Stage(entry["module"], entry["num_chs"]) for entry in info)


def timm_stages(model: nn.Module) -> list[dict[str, Any]]:
    """timm's own ``feature_info`` (the adapter replaces it with ``stages`` once the network is assembled)."""
    return [entry for entry in getattr(model, "feature_info", ()) if isinstance(entry, dict)]


def first_conv(model: nn.Module) -> str:
    return model.pretrained_cfg["first_conv"]


def heads(model: nn.Module) -> tuple[str, ...]:
    classifier = model.pretrained_cfg["classifier"]  # a distilled model names two
    return tuple(classifier) if isinstance(classifier, (tuple, list)) else (classifier,)


def stem_pools(model: nn.Module) -> tuple[str, ...]:
    """The max-pools before the first stage at 1/4 resolution: with the stride-2 first convolution they
    are the ImageNet stem's reduction that the small stem removes (ResNet's ``maxpool``, DenseNet's
    ``features.pool0``, VGG's first two pools)."""
    target = next((entry["module"] for entry in timm_stages(model) if entry["reduction"] >= STEM_REDUCTION), None)
    pools = []
    for name, module in model.named_modules():
        if name == target:
            break
        if isinstance(module, nn.MaxPool2d):
            pools.append(name)
    return tuple(pools)


def hub_cache() -> Path:
    """Where huggingface_hub keeps downloads, read from the environment now (its constants are read at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    cache_root = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "huggingface"
    return Path(os.environ.get("HF_HOME") or cache_root).expanduser() / "hub"


def cached_weights(variant: str) -> tuple[Path | None, str]:
    """The variant's weights file if it is on this machine, and where it is expected (for messages)."""
    import timm
    from huggingface_hub import try_to_load_from_cache

    tagged = timm.list_models(pretrained=True)
    if variant not in tagged and variant not in {name.split(".")[0] for name in tagged}:
        raise BackboneError(
            f"$pretrained=true: timm has no weights for {OptionError.quoted(variant)}; set $pretrained=false"
        )
    config = timm.models.get_pretrained_cfg(variant)  # an architecture alone: its default tag
    if config.hf_hub_id:
        repository = config.hf_hub_id.split("@")[0]
        names = (config.hf_hub_filename,) if config.hf_hub_filename else HUB_FILES
        for name in names:
            found = try_to_load_from_cache(repository, name, cache_dir=hub_cache())
            if isinstance(found, str):
                return Path(found), ""
        where = f"{names[0]} of https://huggingface.co/{repository} into the Hugging Face cache {hub_cache()}"
        return None, where + " (e.g. hf download " + repository + f" --cache-dir {hub_cache()})"
    cached = weights_cache_path(config.url)
    return (cached if cached.exists() else None), f"{cached.name} (from {config.url}) into {cached.parent}"


def pretrained_options(variant: str) -> dict[str, Any]:
    """How timm is to load the weights: from the file on this machine, or downloaded into the cache once."""
    found, where = cached_weights(variant)
    if found is not None:
        return dict(pretrained_cfg_overlay=dict(file=str(found)))
    if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        raise BackboneError(
            f"$pretrained=true needs the timm weights of {variant}, which are not cached and {OFFLINE_ENV} "
            f"forbids downloading them: put {OptionError.literal(where)} on this machine, or set $pretrained=false"
        )
    return dict(cache_dir=hub_cache(), download_hint=where)


def check_patches(model: nn.Module, variant: str, image_size: int) -> None:
    """A patch embedding silently drops the pixels past the last whole patch: refuse such a size."""
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    side = patch[0] if isinstance(patch, tuple) else patch
    if not isinstance(side, int) or image_size % side == 0:
        return
    below = image_size - image_size % side
    nearest = f"the nearest: {below} or {below + side}" if below else f"at least {side}"
    raise BackboneError(
        f"$image_size={image_size} does not fit backbone {variant}: its {side} px patches need a multiple of "
        f"{side} px ({nearest}); change $image_size or $patch_size"
    )


def network(
    *,
    variant: str,
    pretrained: bool,
    image_size: int,
    in_channels: int,
    num_classes: int,
    patch_size: int | None,
    drop_path_rate: float | None,
) -> nn.Module:
    """timm's ``variant`` for the data's channels, classes and (where the model takes one) image size."""
    import timm

    accepted = constructor_options(variant)
    extras = dict(patch_size=patch_size, drop_path_rate=drop_path_rate)
    for name, value in extras.items():
        if value is not None and name not in accepted:
            raise BackboneError(f"${name}={value!r}: {variant} does not take a {name}; set ${name}=null")
    options = {name: value for name, value in extras.items() if value is not None}
    if "img_size" in accepted:
        options["img_size"] = image_size
    loading = pretrained_options(variant) if pretrained else {}
    hint = loading.pop("download_hint", None)
    try:
        model = timm.create_model(
            variant, pretrained=pretrained, in_chans=in_channels, num_classes=num_classes, **loading, **options
        )
    except Exception as error:  # urllib, hub and file errors all mean the same to the user
        if hint is None:
            raise
        raise BackboneError(
            f"$pretrained=true could not obtain the timm weights of {variant} ({type(error).__name__}: "
            f"{OptionError.literal(error)}); put {OptionError.literal(hint)} on this machine, or set $pretrained=false"
        ) from error
    check_patches(model, variant, image_size)
    return model


register_backbone(
    BackboneFamily(
        name="timm",
        variants=variants,
        network=network,
        first_conv=first_conv,
        heads=heads,
        stages=stages,
        stem_pools=stem_pools,
        order=90,
        native_io=True,
    )
)
