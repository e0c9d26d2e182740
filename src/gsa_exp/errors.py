"""The error a component raises for an option it cannot work with.

Components (backbones, attention, data) know their options by their own names, not where
the config keeps them; the config layer, which does know, adds that when it reports the
error. This module imports nothing, so every layer can raise it.
"""

from __future__ import annotations

from collections.abc import Mapping
from string import Template


class _BareNames(dict):
    def __missing__(self, key: str) -> str:
        return key


class OptionMessage(Exception):
    """An error whose message names options as ``$name`` placeholders (a mixin: file errors are OSErrors).

    ``str(error)`` shows the bare names (``stem='tiny': allowed: ...``); ``located``
    shows the config paths the caller knows (``backbone.stem='tiny': allowed: ...``).
    Values written into the message go through ``literal`` so a ``$`` in them stays as it is.
    ``component`` is the kind of component raising it (its config group), for errors raised
    while training runs, where no caller knows which component it came from. Subclasses
    keep the one constructor argument, the template: the config layer rebuilds an error
    as ``type(error)(literal(located))``.
    """

    component: str | None = None

    def __init__(self, template: str) -> None:
        self.template = template
        super().__init__(Template(template).safe_substitute(_BareNames()))

    def __reduce__(self) -> tuple:
        """Pickled with its template (``args`` holds the shown text, where a ``$`` no longer reads as one)."""
        return type(self), (self.template,), self.__dict__

    def located(self, paths: Mapping[str, str]) -> str:
        """The message with every ``$name`` replaced by ``paths[name]``."""
        return Template(self.template).safe_substitute(paths)

    @staticmethod
    def literal(value: object) -> str:
        return str(value).replace("$", "$$")

    @staticmethod
    def quoted(value: object) -> str:
        """``repr(value)`` for a message, a ``$`` in it kept (a user's string: ``stem='$x'``)."""
        return repr(value).replace("$", "$$")


class OptionError(OptionMessage, ValueError):
    """An option value that cannot work."""


class UsageError(ValueError):
    """Input a command cannot work with that is not one option's value: a file that is not a gsa-exp
    checkpoint, data that do not fit the model. The commands print it on one line and exit with status 2."""
