"""OmegaConf resolvers used by conf/hydra: readable, never-shared run directories."""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import OmegaConf

MAX_NAME_LENGTH = 120
_claimed: dict[str, str] = {}  # base path -> directory this process claimed for it


def readable_name(override_dirname: str) -> str:
    """Overrides as a single safe path component: 'backbone=vgg,dataset.root=/d' -> 'backbone=vgg,dataset.root=_d'."""
    name = re.sub(r"[^A-Za-z0-9=,._+-]", "_", override_dirname.strip())
    return name[:MAX_NAME_LENGTH]


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
    """Sweep job sub-directory: its number (unique in the sweep), then the swept overrides
    (so they survive truncation and tell jobs apart at a glance), then the others."""
    swept = swept_keys(sweep_dir) if sweep_dir else []
    items = split_overrides(overrides)
    first = [item for key in swept for item in items if item.split("=", 1)[0] == key]
    ordered = first + [item for item in items if item not in first]
    name = readable_name(",".join(ordered))
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
