"""Turning config nodes into objects, the one way the project does it."""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

# The key that labels a backbone or attention choice in tables and logs; not a constructor argument.
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
    options = {key: value for key, value in as_container(node).items() if key not in DESCRIPTIVE_KEYS}
    return instantiate(options, **runtime, _convert_="all")
