"""The jobs a sweep's ``multirun.yaml`` describes (a basic-sweeper grid, expanded with Hydra's public override parser),
and which of them have no job directory yet."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf


def override_key(override: str) -> str:
    """The key of one override (``+trainer.max_epochs=2`` -> ``trainer.max_epochs``)."""
    return override.split("=", 1)[0].lstrip("+~")


def expected_combinations(multirun_yaml: Path) -> list[tuple[str, ...]] | None:
    """The override lists a basic-sweeper grid in multirun.yaml launches; None when unknowable."""
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        cfg = OmegaConf.load(multirun_yaml)
        sweeper = OmegaConf.select(cfg, "hydra.sweeper._target_", default=None, throw_on_resolution_failure=False)
        if not str(sweeper or "").endswith("BasicSweeper"):
            return None  # other sweepers (e.g. Optuna) decide their jobs as they go
        params = cfg.hydra.sweeper.get("params")
        params = OmegaConf.to_container(params, resolve=False) if params is not None else {}
        arguments = [f"{key}={value}" for key, value in params.items()]
        arguments += [str(item) for item in cfg.hydra.overrides.task]
        return grid_combinations(OverridesParser.create().parse_overrides(arguments))
    except Exception:
        return None


def grid_combinations(overrides: list[Any]) -> list[tuple[str, ...]]:
    """The override lists Hydra's basic sweeper launches for these parsed overrides, in its order.

    Each key keeps the place of its first mention and the value of its last; a discrete
    sweep (``a,b``, ``choice(a,b)``, ``range(...)``) contributes one entry per value, and the
    jobs are the product of the entries.
    """
    entries: dict[str, list[str]] = {}
    for override in overrides:
        key = override.get_key_element()
        if not override.is_sweep_override():
            entries[key] = [f"{key}={override.get_value_element_as_str()}"]
        elif override.is_discrete_sweep():
            entries[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            raise ValueError(f"{key}: the basic sweeper does not expand interval sweeps")
    return [tuple(combination) for combination in itertools.product(*entries.values())]


def not_started(combinations: Sequence[tuple[str, ...]], launched: Sequence[Sequence[str]]) -> list[str]:
    """The combinations no job directory holds (one directory counts once), shown by their swept overrides.

    ``launched`` holds the override list of every job directory; a combination is labelled with the
    overrides whose key takes several values in the grid (all of them when none does).
    """
    present = Counter(frozenset(overrides) for overrides in launched)
    swept = {item for combination in combinations for item in combination}
    swept_keys = {override_key(item) for item in swept}
    shown = {k for k in swept_keys if sum(override_key(i) == k for i in swept) > 1} or swept_keys
    missing = []
    for combination in combinations:
        if present[frozenset(combination)] > 0:
            present[frozenset(combination)] -= 1
        else:
            missing.append(",".join(i for i in combination if override_key(i) in shown))
    return missing
