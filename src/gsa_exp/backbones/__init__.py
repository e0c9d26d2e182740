"""torchvision classification backbones, adapted to small medical images.

Every module of this package that registers a family is imported here, so a new family
is one module (plus its YAML in ``conf/backbone/``) and no list to edit.
"""

import importlib
import pkgutil
from functools import partial

from gsa_exp.backbones.adapter import classifier_path
from gsa_exp.backbones.common import BackboneError, split_outputs
from gsa_exp.backbones.registry import (
    BackboneFamily,
    Stage,
    backbone_family,
    create_backbone,
    list_backbones,
    register_backbone,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def __getattr__(attribute: str) -> object:
    """``build_<family>``: the targets checkpoints written before the registry name; they still load."""
    family = attribute.removeprefix("build_")
    if attribute.startswith("build_") and family in list_backbones():
        return partial(create_backbone, family)
    raise AttributeError(f"module {__name__!r} has no attribute {attribute!r}")


__all__ = [
    "BackboneError",
    "BackboneFamily",
    "Stage",
    "backbone_family",
    "classifier_path",
    "create_backbone",
    "list_backbones",
    "register_backbone",
    "split_outputs",
]
