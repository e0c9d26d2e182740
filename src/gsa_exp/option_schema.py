"""Option schemas: one dataclass per option group declares what each of its options accepts.

A field's annotation is its rule: ``bool``; ``Annotated[int, AtLeast(1)]``,
``Annotated[float, InRange(0, 1, "(]")]``, ``Odd()`` for kernel sizes; ``OneOf(("min", "max"))``;
``ExistingFile()``; ``Required("...")``; ``| None`` lets null pass (``NullMeans`` says what it
does); ``object`` checks presence only; another schema dataclass is a nested group (``bank:
BankOptions`` checks ``bank.components``). Numbers are finite. Every group is declared this way
(``gsa_exp/options/``, ``config/options.py``): the config layer checks a run with these schemas
before it reads data or builds a model, components check their arguments with the same ones, and
every message has one form, ``key=value: what is allowed``. Defaults are the YAML's.

Why the project's own schema and not pydantic v2 or OmegaConf structured configs, measured on the
2-core machine (best of three): a bad value is answered in 0.18-0.30 s with this module against
0.70-0.85 s with pydantic (its import and model build cost about 0.5 s on every ``train.py``
start, ``--help`` included); structured configs check types but not ranges or choices; and
pydantic's messages ("Input should be greater than or equal to 1") would be rewritten anyway.
Like ``gsa_exp.errors``, this module imports nothing of the project's layers.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from gsa_exp.errors import OptionError, OptionMessage


@dataclass(frozen=True)
class AtLeast:
    """A number >= ``minimum`` (> with ``strict``)."""

    minimum: float
    strict: bool = False


@dataclass(frozen=True)
class InRange:
    """A number between ``low`` and ``high``; ``bounds`` as written in maths: "[]", "(]", "[)", "()"."""

    low: float
    high: float
    bounds: str = "[]"


@dataclass(frozen=True)
class OneOf:
    """One of ``choices``; ``also`` are accepted spellings that the message does not advertise."""

    choices: tuple[Any, ...]
    also: tuple[Any, ...] = ()


@dataclass(frozen=True)
class NullMeans:
    """What null does, for the message of an option that may be null (``torch's choice``)."""

    text: str


@dataclass(frozen=True)
class ExistingFile:
    """A path to a file (relative to the launch directory), or null."""


@dataclass(frozen=True)
class Odd:
    """An integer that must be odd (a kernel size: the window has a centre pixel)."""


@dataclass(frozen=True)
class Required:
    """An option that must be given; ``hint`` says how (the message after ``name=None:``)."""

    hint: str


@dataclass(frozen=True)
class Rule:
    """A field's annotation, taken apart."""

    kind: type
    nullable: bool
    marks: tuple[Any, ...]

    def mark(self, kind: type) -> Any:
        return next((mark for mark in self.marks if isinstance(mark, kind)), None)


def rules(schema: type) -> dict[str, Rule]:
    """Every field of ``schema`` with its rule, in declaration order."""
    hints = typing.get_type_hints(schema, include_extras=True)
    return {field.name: _rule(hints[field.name]) for field in dataclasses.fields(schema)}


def _rule(annotation: Any) -> Rule:
    marks: tuple[Any, ...] = ()
    if typing.get_origin(annotation) is typing.Annotated:
        annotation, *extras = typing.get_args(annotation)
        marks = tuple(extras)
    nullable = False
    if typing.get_origin(annotation) in (Union, types.UnionType):
        members = [member for member in typing.get_args(annotation) if member is not type(None)]
        nullable = len(members) < len(typing.get_args(annotation))
        (annotation,) = members
    return Rule(kind=annotation, nullable=nullable, marks=marks)


def check_options(
    schema: type,
    values: Mapping[str, Any] | Callable[[str], Any],
    error: type[OptionMessage] = OptionError,
    *,
    present_only: bool = False,
    prefix: str = "",
) -> None:
    """Raise ``error`` for the first option of ``schema`` whose value its rule refuses.

    ``values`` maps option names to values (a function: looked up one by one, e.g. in a
    config node). ``present_only`` skips options that are null or absent (a config that
    may override a few keys of a checkpoint's). A nested group's options are named
    ``$group.option`` (``prefix``: the group's own path).
    """
    lookup = values if callable(values) else values.get
    for name, rule in rules(schema).items():
        value = lookup(name)
        if value is None and present_only:
            continue
        if dataclasses.is_dataclass(rule.kind):  # a nested group of options
            if isinstance(value, rule.kind):
                continue  # built already, and so checked
            if value is None or not hasattr(value, "get"):
                fields = ", ".join(field.name for field in dataclasses.fields(rule.kind))
                problem = f"must be a group of options ({fields})"
                raise error(f"${prefix}{name}={OptionMessage.literal(repr(value))}: {OptionMessage.literal(problem)}")
            check_options(rule.kind, value.get, error, present_only=present_only, prefix=f"{prefix}{name}.")
            continue
        problem = refusal(rule, value)
        if problem is not None:
            raise error(f"${prefix}{name}={OptionMessage.literal(repr(value))}: {OptionMessage.literal(problem)}")


class Options:
    """Base of a schema whose instances check themselves: building one with a refused value raises.

    Components keep their options as these instances; the config layer checks the same schema
    on a config node without building it.
    """

    def __post_init__(self) -> None:
        check_options(type(self), lambda name: getattr(self, name, None))


def checked(schema: type, values: Mapping[str, Any], error: type[OptionMessage] = OptionError, prefix: str = "") -> Any:
    """``schema(**values)`` once every value passed its rule (a nested group built as its schema);
    ``prefix``: where the group sits among the caller's options (``bank.``)."""
    check_options(schema, values, error, prefix=prefix)
    kinds = {name: rule.kind for name, rule in rules(schema).items()}
    unknown = sorted(set(values) - set(kinds))
    if unknown:  # a misspelt option must not pass unnoticed
        problem = f"not an option here; the options are {', '.join(kinds)}"
        raise error(f"${prefix}{unknown[0]}={OptionMessage.literal(repr(values[unknown[0]]))}: {problem}")
    arguments = {
        name: checked(kinds[name], value, error, f"{prefix}{name}.")
        if dataclasses.is_dataclass(kinds[name]) and isinstance(value, Mapping)
        else value
        for name, value in values.items()
    }
    try:  # a schema's own rule across two of its options (__post_init__) speaks as the caller's error too
        return schema(**arguments)
    except OptionMessage as refused:
        raise error(re.sub(r"(?<!\$)\$(?=[A-Za-z_])", f"${prefix}", refused.template)) from None


def refusal(rule: Rule, value: Any) -> str | None:
    """What is allowed, when ``value`` breaks ``rule``; None when it is accepted."""
    required = rule.mark(Required)
    if required is not None and value in (None, ""):  # 0 is a value (a folder named 0)
        return required.hint
    if value is None and rule.nullable:
        return None
    or_null = " or null" if rule.nullable and required is None else ""
    if rule.kind is bool:
        if isinstance(value, bool):
            return None
        if not rule.nullable:
            return "must be true or false"
        note = rule.mark(NullMeans)
        return "must be true, false or null" + (f" ({note.text})" if note else "")
    one_of = rule.mark(OneOf)
    if one_of is not None:
        accepted = (*one_of.choices, *one_of.also)
        if value in accepted or str(value) in accepted:
            return None
        return f"allowed: {', '.join(map(str, one_of.choices))}"
    if rule.kind in (int, float):
        null_means = rule.mark(NullMeans)
        or_null += f" ({null_means.text})" if or_null and null_means else ""
        return _number_refusal(rule, value, or_null)
    if rule.kind is object:  # any value (a path that may read as a number); only its presence is checked
        return None
    if rule.mark(ExistingFile) is not None:
        path = Path(str(value)).expanduser()
        resolved = path if path.is_absolute() else Path.cwd() / path
        return None if resolved.is_file() else f"no such file (looked at {resolved}, relative to the launch directory)"
    if not isinstance(value, rule.kind):
        return f"must be a {rule.kind.__name__}{or_null}"
    return None


def _number_refusal(rule: Rule, value: Any, or_null: str) -> str | None:
    number_types = (int,) if rule.kind is int else (int, float)
    is_number = isinstance(value, number_types) and not isinstance(value, bool) and math.isfinite(value)
    in_range = rule.mark(InRange)
    if in_range is not None:
        low_ok = is_number and (value > in_range.low if in_range.bounds[0] == "(" else value >= in_range.low)
        high_ok = is_number and (value < in_range.high if in_range.bounds[1] == ")" else value <= in_range.high)
        interval = f"{in_range.bounds[0]}{in_range.low}, {in_range.high}{in_range.bounds[1]}"
        return None if low_ok and high_ok else f"must be a number in {interval}{or_null}"
    at_least = rule.mark(AtLeast)
    bound = "" if at_least is None else f" {'>' if at_least.strict else '>='} {at_least.minimum}"
    odd = rule.mark(Odd) is not None
    if not is_number or (odd and value % 2 == 0):
        return (
            f"must be {'an odd integer' if odd else 'an integer' if rule.kind is int else 'a number'}{bound}{or_null}"
        )
    if at_least is not None and (value <= at_least.minimum if at_least.strict else value < at_least.minimum):
        return f"must be{bound}{or_null}"
    return None
