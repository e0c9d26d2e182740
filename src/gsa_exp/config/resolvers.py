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


def job_directory(number: int, overrides: str) -> str:
    """Sweep job sub-directory: its number (unique in the sweep) then its overrides."""
    name = readable_name(overrides)
    return f"{number}_{name}" if name else f"job{number}"


def epoch_fraction(max_epochs: int, fraction: float) -> int:
    """An epoch milestone as a fraction of training (MedMNIST decays lr at 50% and 75%)."""
    return max(1, int(max_epochs * fraction))


def register_resolvers() -> None:
    """Make the resolvers known to OmegaConf (idempotent)."""
    for name, function in (
        ("gsa_run_dir", claim_directory),
        ("gsa_job_dir", job_directory),
        ("gsa_epoch_fraction", epoch_fraction),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function, use_cache=True)
