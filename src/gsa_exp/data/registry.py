"""Data sources by name: each source module registers its class, and whatever loops over data sets
(the tests first) reads the names here, so no list of data sets is written anywhere.

A data set is added in two files: a module in this package whose source class (``load() ->
LoadedData``) is decorated with ``@register_source("<name>")``, and ``conf/dataset/<name>.yaml``,
which extends the loader base and names that class as ``source._target_``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from gsa_exp.data.datamodule import DataSource

Source = TypeVar("Source", bound=type)

_SOURCES: dict[str, type] = {}


def register_source(name: str) -> Callable[[Source], Source]:
    """Class decorator: the source is known as ``name``, also the stem of its ``conf/dataset/`` YAML."""

    def register(source: Source) -> Source:
        known = _SOURCES.get(name)
        if known is not None and _path(known) != _path(source):  # a module imported again re-registers its own class
            raise ValueError(f"two data sources are named {name!r}: {_path(known)} and {_path(source)}")
        _SOURCES[name] = source
        return source

    return register


def _path(source: type) -> str:
    return f"{source.__module__}.{source.__qualname__}"


def _import_source_modules() -> None:
    """Import every module of this package, so that each source has registered itself."""
    package = importlib.import_module(__package__)
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{__package__}.{module.name}")


def list_sources() -> list[str]:
    """The names of every registered data source, sorted."""
    _import_source_modules()
    return sorted(_SOURCES)


def get_source(name: str) -> type:
    """The source class registered as ``name``."""
    _import_source_modules()
    if name not in _SOURCES:
        raise ValueError(f"no data source is registered as {name!r}; registered: {', '.join(sorted(_SOURCES))}")
    return _SOURCES[name]


def create_source(name: str, **options: Any) -> DataSource:
    """The source registered as ``name``, built with ``options`` (its constructor's keyword arguments)."""
    return get_source(name)(**options)
