"""Data sources by name: each source module registers its class, and whatever loops over data sets
(the tests first) reads the names here, so no list of data sets is written anywhere.

A data set is added in two files: a module in this package whose source class (``load() ->
LoadedData``) is decorated with ``@register_source("<name>")``, and ``conf/dataset/<name>.yaml``,
which extends the loader base and selects it as every component is selected:
``source: {_target_: gsa_exp.data.create_source, name: <name>, ...}``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from gsa_exp.data.files import DataError
from gsa_exp.registry import Registry

if TYPE_CHECKING:
    from gsa_exp.data.datamodule import DataSource

Source = TypeVar("Source", bound=type)


def _import_source_modules() -> None:
    """Import every module of this package, so that each source has registered itself."""
    package = importlib.import_module(__package__)
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{__package__}.{module.name}")


SOURCES: Registry[type] = Registry("data source", DataError, load=_import_source_modules)


def register_source(name: str) -> Callable[[Source], Source]:
    """Class decorator: the source is known as ``name``, also the stem of its ``conf/dataset/`` YAML."""
    return SOURCES.register(name)


def list_sources() -> list[str]:
    """The names of every registered data source, sorted."""
    return sorted(SOURCES.names())


def get_source(name: str) -> type:
    """The source class registered as ``name``."""
    return SOURCES.get(name)


def create_source(name: str, **options: Any) -> DataSource:
    """The source registered as ``name``, built with ``options`` (its constructor's keyword arguments)."""
    return get_source(name)(**options)
