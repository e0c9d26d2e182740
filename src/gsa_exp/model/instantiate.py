"""Turning config nodes into objects, the one way the project does it."""

from __future__ import annotations

import inspect
from typing import Any

from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

# ``name`` labels a choice in tables and logs. It is passed only to targets that take it: the
# registries' factories (``create_backbone(name, ...)``, ``create_attention(name, ...)``) build
# the variant ``name``, while checkpoints written before the registries name a class with a
# ``name`` it does not take (``_target_: gsa_exp.attention.GlobalSpatialAttention``) and still load.
DESCRIPTIVE_KEYS = ("name",)


def as_container(node: Any) -> Any:
    """Plain dicts/lists from a DictConfig (resolved), anything else unchanged."""
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)
    return node


def instantiate_component(node: Any, **runtime: Any) -> Any:
    """Instantiate a config group node (``_target_`` + options), adding data-derived arguments.

    ``runtime`` carries what only the data can tell (channels, classes, image size); the
    YAML holds every other argument, so nothing is defaulted silently in code.
    """
    options = as_container(node)
    taken = _parameter_names(options.get("_target_"))
    options = {key: value for key, value in options.items() if key not in DESCRIPTIVE_KEYS or key in taken}
    return instantiate(options, **runtime, _convert_="all")


def _parameter_names(target: str | None) -> set[str]:
    """The parameters ``target`` names; none when it cannot be found (Hydra then reports that)."""
    try:
        return set(inspect.signature(get_object(target)).parameters) if target else set()
    except Exception:  # any import or signature failure: instantiate() raises it with its own message
        return set()
