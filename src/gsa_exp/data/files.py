"""What every source that reads from disk shares: path resolution and data errors.

Relative paths in the config are resolved against the launch directory (``Path.cwd()``;
Hydra does not change it, ``hydra.job.chdir=false``). Every error names the resolved path,
and says how a relative path was resolved, so a wrong ``root`` is easy to spot.

The errors name options relative to the data set (``$root``, ``$source.path``), as
``OptionMessage`` templates; the config layer says where they live (``dataset.root``).
Every value written into a message (paths, file contents, exception texts) goes through
``literal``, so a ``$`` in it is shown as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gsa_exp.errors import OptionError, OptionMessage

MAX_LISTED = 10  # problems listed in one error message; the rest are counted
literal = OptionMessage.literal  # a value written into a data error's message, ``$`` kept as it is


class DataError(OptionError):
    """A data-set option that cannot work; the message names it relative to the data set (``$source.flag``)."""

    component = "dataset"


class DataNotFoundError(OptionMessage, FileNotFoundError):
    """A data file or directory is missing; the message says where it was expected and how to get it."""

    component = "dataset"


class DataFormatError(OptionMessage, ValueError):
    """A data file exists but does not hold what the source expects."""

    component = "dataset"


@dataclass(frozen=True)
class ResolvedPath:
    """A path from the config (``option=given``) and where it points."""

    option: str  # the option's name relative to its component, e.g. "root" or "source.path" of the data set
    given: str
    path: Path

    @classmethod
    def resolve(cls, option: str, given: str | Path) -> ResolvedPath:
        expanded = Path(given).expanduser()
        return cls(option=option, given=str(given), path=expanded if expanded.is_absolute() else Path.cwd() / expanded)

    @property
    def relative(self) -> bool:
        return not Path(self.given).expanduser().is_absolute()

    def describe(self, target: Path | None = None) -> str:
        """``target`` (default: the path itself), with how a relative option was resolved.

        Part of an error's template: the option is the placeholder ``$option``, the paths are literal.
        """
        text = literal(target if target is not None else self.path)
        if self.relative:
            text += f" (${self.option}={literal(repr(self.given))} resolved against the launch directory "
            text += f"{literal(Path.cwd())})"
        return text


def listing(problems: Sequence[str], what: str) -> str:
    """'N what:' and up to MAX_LISTED indented problems, then how many more there are.

    Part of an error's template: ``problems`` (paths, file contents) are written literally, ``what`` as given.
    """
    lines = [f"{len(problems)} {what}:"] + [f"  {literal(problem)}" for problem in problems[:MAX_LISTED]]
    if len(problems) > MAX_LISTED:
        lines.append(f"  ... and {len(problems) - MAX_LISTED} more")
    return "\n".join(lines)
