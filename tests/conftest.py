"""Shared fixtures: composed configs for tiny, fast runs on the embedded data set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

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


def array_datamodule(source, **changes):
    """An ArrayDataModule over ``source`` with plain settings (normalised at 0.5, no augmentation)."""
    from gsa_exp.data.datamodule import ArrayDataModule

    options = dict(
        name="test",
        root=None,
        source=source,
        image_size=32,
        channels=None,
        batch_size=16,
        eval_batch_size=16,
        num_workers=0,
        pin_memory=False,
        normalize=dict(mean=[0.5], std=[0.5]),
        augment=dict(hflip=False, max_shift=0),
        shuffle_seed=0,
    )
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
