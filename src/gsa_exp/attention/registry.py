"""The attention registry: every variant's module registers its class under the name its YAML uses.

A variant is added in two files: a module in this package whose class carries
``@register_attention("<name>")``, and ``conf/attention/<name>.yaml`` with
``_target_: gsa_exp.attention.create_attention`` and ``name: <name>``. Importing
``gsa_exp.attention`` imports every module of the package (``import_modules``), so a new
module registers itself with no list to edit; the tests loop over ``list_attention()``.
The registry is the project's one registry type (``gsa_exp.registry``).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from gsa_exp.attention.base import AttentionError
from gsa_exp.registry import Registry

if TYPE_CHECKING:
    from gsa_exp.attention.base import SpatialAttention

Variant = TypeVar("Variant", bound=type)

ATTENTION: Registry[type[SpatialAttention]] = Registry("attention variant", AttentionError)


def register_attention(name: str, *, order: int = 100) -> Callable[[Variant], Variant]:
    """Class decorator: ``create_attention(name, ...)`` builds this class.

    ``order`` places the variant's columns in sweep tables (the paper's none and global first).
    """
    return ATTENTION.register(name, order=order)


def list_attention() -> list[str]:
    """The registered names, sorted (the order of tests and listings does not depend on import order)."""
    return sorted(ATTENTION.names())


def attention_order() -> tuple[str, ...]:
    """The registered names in table order: by declared ``order``, then by name."""
    return ATTENTION.names()


def attention_class(name: str) -> type[SpatialAttention]:
    """The class registered under ``name``; an unknown name is refused with the registered ones."""
    return ATTENTION.get(name)


def create_attention(name: str, **options: Any) -> SpatialAttention:
    """The variant ``name`` built with ``options`` (its YAML's keys plus the data-derived arguments)."""
    return attention_class(name)(**options)


def import_modules(package: str, path: Iterable[str]) -> None:
    """Import every module of ``package`` (found on ``path``), so that each variant registers itself."""
    for module in pkgutil.iter_modules(path):
        importlib.import_module(f"{package}.{module.name}")
