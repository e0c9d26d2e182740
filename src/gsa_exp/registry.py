"""One registry type for every kind of component (backbones, attention variants, data sources).

As fvcore's ``Registry``: one instance per kind, ``register`` as a decorator (or a call), ``get``
with one error naming the registered entries, one rule for a name registered twice (the same
object again, as when a module is imported twice, is harmless; another object is refused). A
YAML selects a component the same way for every kind: ``_target_`` the kind's factory and
``name:`` the registered name. This module imports nothing above the base, so every layer uses it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from gsa_exp.errors import OptionError, OptionMessage

Entry = TypeVar("Entry")


def describe(entry: Any) -> str:
    """``module.Class`` of a class or function; a record (a backbone family) by its type."""
    if hasattr(entry, "__qualname__"):
        return f"{entry.__module__}.{entry.__qualname__}"
    return f"a {type(entry).__name__} of {type(entry).__module__}"


def same_entry(known: Any, entry: Any) -> bool:
    """The same class or function (imported again: equal qualified names), or an equal record."""
    if known is entry:
        return True
    if hasattr(known, "__qualname__") and hasattr(entry, "__qualname__"):
        return describe(known) == describe(entry)
    return known == entry


class Registry(Generic[Entry]):
    """Named entries of one kind, listed in table order (``order``, then name)."""

    def __init__(
        self, kind: str, error: type[OptionError] = OptionError, load: Callable[[], None] | None = None
    ) -> None:
        self.kind = kind  # "backbone", "attention variant", "data source": how messages name the entries
        self.error = error
        self._load = load  # imports the modules whose entries register themselves (lazily, on first lookup)
        self._entries: dict[str, Entry] = {}
        self._order: dict[str, int] = {}

    def register(self, name: str, entry: Entry | None = None, *, order: int = 100) -> Any:
        """``registry.register(name, entry)``, or ``@registry.register(name)`` on a class or function."""
        if entry is None:
            return lambda decorated: self.register(name, decorated, order=order)
        if name in self._entries and not same_entry(self._entries[name], entry):
            known, new = (OptionMessage.literal(describe(item)) for item in (self._entries[name], entry))
            raise self.error(
                f"{self.kind} {OptionMessage.quoted(name)} is already registered (by {known}); {new} needs another name"
            )
        self._entries[name], self._order[name] = entry, order
        return entry

    def _loaded(self) -> dict[str, Entry]:
        if self._load is not None:
            self._load()
        return self._entries

    def names(self) -> tuple[str, ...]:
        """Every registered name in table order: by declared ``order``, then alphabetically."""
        entries = self._loaded()
        return tuple(sorted(entries, key=lambda name: (self._order[name], name)))

    def get(self, name: str) -> Entry:
        """The entry registered as ``name``; an unknown name is refused naming the registered ones."""
        entries = self._loaded()
        if name not in entries:
            raise self.error(
                f"$name={OptionMessage.quoted(name)}: not a registered {self.kind}; "
                f"registered: {', '.join(self.names())}"
            )
        return entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._loaded()
