"""Shared fixtures: composed configs for tiny, fast runs on the embedded data set."""

from __future__ import annotations

import copy
import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
os.environ["GSA_EXP_ROOT"] = str(ROOT)
os.environ["GSA_EXP_OFFLINE"] = "1"  # tests never download weights

from gsa_exp.config.resolvers import register_resolvers  # noqa: E402

register_resolvers()

# A data set small enough for a CPU test: 80 training images of 32 x 32 (the default GSA bank keeps 64 components).
TINY_DATA = [
    "dataset.source.num_train=80",
    "dataset.source.num_val=32",
    "dataset.source.num_test=32",
    "dataset.batch_size=16",
    "dataset.eval_batch_size=32",
]
QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "extras.print_config=false"]


@functools.cache
def _group_node(group: str, choice: str) -> dict[str, Any]:
    cfg = compose_config([f"{group}={choice}"])
    node = OmegaConf.to_container(cfg[group], resolve=True)
    return {key: value for key, value in node.items() if key not in ("_target_", "_partial_", "name")}


def merged(options: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``options`` with ``changes``; a dict changes a nested dict key by key (bank=dict(components=None))."""
    result = copy.deepcopy(options)
    for key, value in changes.items():
        result[key] = (
            merged(result[key], value) if isinstance(value, dict) and isinstance(result.get(key), dict) else value
        )
    return result


def yaml_options(group: str, choice: str, **changes: Any) -> dict[str, Any]:
    """The constructor arguments ``conf/<group>/<choice>.yaml`` gives a component, as a run resolves
    them, with ``changes``: a test states what it chooses and takes every other default from the YAML."""
    return merged(_group_node(group, choice), changes)


def perturb(module, seed: int = 1, scale: float = 0.3) -> None:
    """Give every parameter of ``module`` non-trivial values (attention gates start at zero weights)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)


def array_datamodule(source, **changes):
    """An ArrayDataModule over ``source``: the loader defaults of the YAML, small batches of 32 px images."""
    from gsa_exp.data.datamodule import ArrayDataModule

    loader = yaml_options("dataset", "synthetic")
    loader.pop("source")
    options = dict(loader, name="test", root=None, source=source, image_size=32, batch_size=16, eval_batch_size=16)
    options.update(normalize=dict(mean=[0.5], std=[0.5]), shuffle_seed=0)
    options.update(changes)
    return ArrayDataModule(**options)


def dataset_choices() -> list[str]:
    """Every option of conf/dataset/, presets and folders (smoke/...) included: the directory listed, no list kept."""
    folder = CONF / "dataset"
    return sorted(path.relative_to(folder).with_suffix("").as_posix() for path in folder.rglob("*.yaml"))


def compose_config(overrides: list[str], output_dir: Path | None = None, config_name: str = "train") -> DictConfig:
    """The config ``python train.py OVERRIDES`` would see, writing into ``output_dir``."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides)
    if output_dir is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
    return cfg


@pytest.fixture
def tiny_config(tmp_path: Path):
    """compose(overrides) for a tiny synthetic run whose outputs land in tmp_path/run."""

    def make(*overrides: str) -> DictConfig:
        return compose_config([*TINY_DATA, *QUIET, *overrides], output_dir=tmp_path / "run")

    return make


def run_script(script: str, *args: str, cwd: Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run an entry point the way a user does, in a fresh interpreter."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """A fabricated sweep: 2 backbones x 2 attentions x 3 seeds, one failed job (fabricated_sweeps.py)."""
    from fabricated_sweeps import fabricated_sweep

    return fabricated_sweep(tmp_path)


@pytest.fixture
def image_sweep(tmp_path: Path) -> Path:
    """A fabricated sweep with per-image predictions and targets (fabricated_sweeps.py)."""
    from fabricated_sweeps import fabricated_image_sweep

    return fabricated_image_sweep(tmp_path)
