"""The attention registry: every variant's module registers its class under the name its YAML uses.

A variant is added in two files: a module in this package whose class carries
``@register_attention("<name>")``, and ``conf/attention/<name>.yaml`` with
``_target_: gsa_exp.attention.create_attention`` and ``name: <name>``. Importing
``gsa_exp.attention`` imports every module of the package (``import_modules``), so a new
module registers itself with no list to edit; the tests loop over ``list_attention()``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from gsa_exp.attention.base import SpatialAttention

Variant = TypeVar("Variant", bound=type)

_VARIANTS: dict[str, type[SpatialAttention]] = {}
_ORDER: dict[str, int] = {}


def register_attention(name: str, *, order: int = 100) -> Callable[[Variant], Variant]:
    """Class decorator: ``create_attention(name, ...)`` builds this class; a name is registered once.

    ``order`` places the variant's columns in sweep tables (the paper's none and global first).
    """

    def register(variant: Variant) -> Variant:
        if name in _VARIANTS:
            raise ValueError(
                f"attention variant {name!r} is already registered (by {_qualified(_VARIANTS[name])}); "
                f"{_qualified(variant)} needs another name"
            )
        _VARIANTS[name], _ORDER[name] = variant, order
        return variant

    return register


def _qualified(variant: type) -> str:
    return f"{variant.__module__}.{variant.__qualname__}"


def list_attention() -> list[str]:
    """The registered names, sorted (the order of tests and listings does not depend on import order)."""
    return sorted(_VARIANTS)


def attention_order() -> tuple[str, ...]:
    """The registered names in table order: by declared ``order``, then by name."""
    return tuple(sorted(_VARIANTS, key=lambda name: (_ORDER[name], name)))


def attention_class(name: str) -> type[SpatialAttention]:
    """The class registered under ``name``; an unknown name is refused with the registered ones."""
    if name not in _VARIANTS:
        raise ValueError(f"unknown attention variant {name!r}; registered: {', '.join(list_attention())}")
    return _VARIANTS[name]


def create_attention(name: str, **options: Any) -> SpatialAttention:
    """The variant ``name`` built with ``options`` (its YAML's keys plus the data-derived arguments)."""
    return attention_class(name)(**options)


def import_modules(package: str, path: Iterable[str]) -> None:
    """Import every module of ``package`` (found on ``path``), so that each variant registers itself."""
    for module in pkgutil.iter_modules(path):
        importlib.import_module(f"{package}.{module.name}")
