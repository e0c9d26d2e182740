"""Every component's options, declared once where no torch is needed (``@declares("attention", "global")``):
the config layer checks a run's nodes with them before it reads data or builds a model, and the
components check their own arguments with the same schemas. The other groups (trainer, optimizer,
loss, ...) are declared in ``gsa_exp.config.options``. A component whose options are declared
already needs nothing here; one that brings new options declares them in its group's module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from gsa_exp.registry import Registry

Schema = TypeVar("Schema", bound=type)

SCHEMAS: Registry[type] = Registry("option schema")


def declares(group: str, *names: str) -> Callable[[Schema], Schema]:
    """Class decorator: this schema declares the options of ``group=<name>`` for each name."""

    def register(schema: Schema) -> Schema:
        for name in names:
            SCHEMAS.register(f"{group}/{name}", schema)
        return schema

    return register


def schema_for(group: str, name: str) -> type | None:
    """The schema of ``group=<name>``, or None when that choice declares none."""
    key = f"{group}/{name}"
    return SCHEMAS.get(key) if key in SCHEMAS else None


def declared() -> dict[str, type]:
    """Every declared ``group/name`` with its schema (the tests enumerate every option from here)."""
    return {key: SCHEMAS.get(key) for key in SCHEMAS.names()}


from gsa_exp.options import attention, backbone, callbacks, data, scheme  # noqa: E402,F401  (each declares its schemas)
