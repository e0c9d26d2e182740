"""OmegaConf resolvers used by conf/hydra: readable, never-shared run directories."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

from omegaconf import OmegaConf

MAX_NAME_LENGTH = 120  # of the overrides part: leaves room for the date, time or job number in 255 bytes
HASH_LENGTH = 6
_claimed: dict[str, str] = {}  # base path -> directory this process claimed for it


def readable_name(override_dirname: str, swept: Sequence[str] = ()) -> str:
    """Overrides as one safe path component whose every value reads whole.

    Items are ordered by what tells runs apart: the swept keys (in the sweep's order), then
    group choices and other top-level keys (``backbone=vgg``, ``seed=0``), then keys inside a
    group (``trainer.max_epochs=5``), then additions and deletions (``++trainer.limit_val_batches=2``);
    Hydra's sorted order within each. Characters other than letters, digits and ``=,._+-`` become
    ``_`` ('dataset.root=/d' -> 'dataset.root=_d'). Longer than ``MAX_NAME_LENGTH``: whole items
    are dropped from the end and ``+<n>more-<hash>`` says how many, the hash (of all overrides)
    keeping names of different runs different; no value is ever cut.
    """
    items = split_overrides(override_dirname.strip())
    order = {key: index for index, key in enumerate(swept)}
    ranked = sorted(items, key=lambda item: _rank(item.split("=", 1)[0], order))  # stable: Hydra's order kept
    safe = [re.sub(r"[^A-Za-z0-9=,._+-]", "_", item) for item in ranked]
    return _fitted(safe, override_dirname)


def _rank(key: str, swept: dict[str, int]) -> tuple[int, int]:
    bare = key.lstrip("+~")
    if bare in swept:
        return 0, swept[bare]
    if key != bare:
        return 3, 0
    return (1 if "." not in key else 2), 0


def _fitted(items: list[str], full: str) -> str:
    """The items joined, or as many leading ones as fit with ``+<n>more-<hash>`` after them."""
    name = ",".join(items)
    if len(name) <= MAX_NAME_LENGTH:
        return name
    digest = hashlib.sha1(full.encode()).hexdigest()[:HASH_LENGTH]
    for kept in range(len(items) - 1, 0, -1):
        name = ",".join([*items[:kept], f"+{len(items) - kept}more-{digest}"])
        if len(name) <= MAX_NAME_LENGTH:
            return name
    return f"+{len(items)}more-{digest}"


def claim_directory(base: str, overrides: str = "") -> str:
    """Create and return ``base[_overrides]``, adding ``-2``, ``-3``... if another run got there first.

    ``mkdir`` without ``exist_ok`` is atomic, so two runs started in the same second
    (even in parallel processes) never share a directory. The answer is remembered per
    base so that Hydra, which resolves the run directory more than once, gets one answer.
    """
    name = readable_name(overrides)
    key = f"{base}\0{name}"
    if key in _claimed:
        return _claimed[key]
    stem = f"{base}_{name}" if name else base
    Path(stem).parent.mkdir(parents=True, exist_ok=True)
    candidate, attempt = stem, 1
    while True:
        try:
            Path(candidate).mkdir()
            break
        except FileExistsError:
            attempt += 1
            candidate = f"{stem}-{attempt}"
    _claimed[key] = candidate
    return candidate


def split_overrides(override_dirname: str) -> list[str]:
    """'a=1,b=[2,3]' -> ['a=1', 'b=[2,3]'] (commas inside brackets belong to the value)."""
    items, depth, current = [], 0, ""
    for character in override_dirname:
        if character in "[({":
            depth += 1
        elif character in "])}":
            depth -= 1
        if character == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += character
    return [item for item in [*items, current] if item]


def swept_keys(sweep_dir: str) -> list[str]:
    """Keys the sweep varies, read from the multirun.yaml Hydra writes before the jobs start."""
    path = Path(sweep_dir) / "multirun.yaml"
    if not path.is_file():
        return []
    hydra_cfg = OmegaConf.load(path).hydra
    keys = list(OmegaConf.select(hydra_cfg, "sweeper.params", default={}) or {})
    for override in OmegaConf.select(hydra_cfg, "overrides.task", default=[]) or []:
        key, _, value = str(override).partition("=")
        if len(split_overrides(value)) > 1 or value.startswith(("range(", "choice(", "interval(", "glob(")):
            keys.append(key.lstrip("+~"))
    return keys


def job_directory(number: int, overrides: str, sweep_dir: str = "") -> str:
    """Sweep job sub-directory: its number (unique in the sweep), then the overrides, swept ones first
    (so they tell jobs apart at a glance; ``readable_name`` orders the rest)."""
    name = readable_name(overrides, swept_keys(sweep_dir) if sweep_dir else ())
    return f"{number}_{name}" if name else f"job{number}"


def directory_name(path: str) -> str:
    """The last component of a path: a run directory's name names its run in a tracking server."""
    return Path(path).name


def epoch_fraction(max_epochs: int, fraction: float) -> int:
    """An epoch milestone as a fraction of training (MedMNIST decays lr at 50% and 75%)."""
    return max(1, int(max_epochs * fraction))


def optimisation_direction(mode: str) -> str:
    """monitor.mode (max/min) in the words hyper-parameter sweepers use."""
    return {"max": "maximize", "min": "minimize"}[mode]


def register_resolvers() -> None:
    """Make the resolvers known to OmegaConf (idempotent)."""
    for name, function in (
        ("gsa_run_dir", claim_directory),
        ("gsa_job_dir", job_directory),
        ("gsa_dir_name", directory_name),
        ("gsa_epoch_fraction", epoch_fraction),
        ("gsa_direction", optimisation_direction),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function, use_cache=True)
