"""Where a run's numbers came from: code version, packages, machine (``provenance.json``)."""

from __future__ import annotations

import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

PACKAGES = ("gsa-exp", "torch", "torchvision", "pytorch-lightning", "hydra-core", "omegaconf", "torchmetrics", "numpy")


def git_state(root: Path) -> dict[str, Any]:
    """The commit checked out at ``root`` and whether the work tree differed from it (None outside git)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


CODE_DIR = Path(__file__).resolve().parents[1]  # the gsa_exp package: its repository, when installed editable


def provenance() -> dict[str, Any]:
    """The code's git state (of the installed package, wherever the run is launched from) and the machine."""
    cuda = torch.cuda.is_available()
    return {
        "git": git_state(CODE_DIR),
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "cuda": torch.version.cuda if cuda else None,
        "command": sys.argv,
    }
