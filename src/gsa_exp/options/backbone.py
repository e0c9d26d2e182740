"""The backbone families' options (``conf/backbone/<name>.yaml``); ``variant`` is checked by its family."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from gsa_exp.option_schema import AtLeast, InRange, NullMeans, OneOf, Options
from gsa_exp.options import declares

STEMS = ("auto", "small", "imagenet")
HEADS = ("auto", "compact", "classic")
DROPOUT = InRange(0, 1, "[)")


@declares("backbone", "resnet", "densenet")
@dataclass(frozen=True)
class BackboneOptions(Options):
    variant: str  # a torchvision model of the family (resnet18, densenet121, ...)
    pretrained: bool  # ImageNet weights (cached, or downloaded once)
    stem: Annotated[str, OneOf(STEMS)]  # auto: small (3x3 stride 1, no max-pool) up to 64 px, else imagenet


@declares("backbone", "googlenet")
@dataclass(frozen=True)
class GoogLeNetOptions(BackboneOptions):
    aux_logits: bool  # the two auxiliary heads, weighted by loss.aux_weight in training
    dropout: Annotated[float, DROPOUT]


@declares("backbone", "vgg")
@dataclass(frozen=True)
class VGGOptions(BackboneOptions):
    head: Annotated[str, OneOf(HEADS)]  # auto: compact (global pool + linear) up to 64 px, else classic
    dropout: Annotated[float, DROPOUT]


@declares("backbone", "efficientnet")
@dataclass(frozen=True)
class EfficientNetOptions(BackboneOptions):
    dropout: Annotated[float, DROPOUT]
    stochastic_depth_prob: Annotated[float, DROPOUT]


@declares("backbone", "convnext")
@dataclass(frozen=True)
class ConvNeXtOptions(BackboneOptions):
    stochastic_depth_prob: Annotated[float, DROPOUT]


@declares("backbone", "timm")
@dataclass(frozen=True)
class TimmOptions(BackboneOptions):
    # variant: any name of timm.list_models(), a pretrained tag after a dot (checked by the family)
    patch_size: Annotated[int | None, AtLeast(1), NullMeans("the model's own")]  # models with patches (ViTs)
    drop_path_rate: Annotated[float | None, DROPOUT, NullMeans("the model's own")]  # stochastic depth in training
