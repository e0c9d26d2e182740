"""Models and data for the measurements, built from the project's own configs (conf/)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict
from torch import Tensor

from gsa_exp.config.resolvers import register_resolvers
from gsa_exp.data.datamodule import ArrayDataModule
from gsa_exp.model.classifier import ImageClassifier
from gsa_exp.training.builders import build_model

PRECISIONS = ("32-true", "bf16-mixed")


def compose_train_config(overrides: list[str]) -> DictConfig:
    """The config ``python train.py OVERRIDES`` would see; its run directory is a fresh temporary one."""
    root = Path(os.environ.get("GSA_EXP_ROOT") or Path(__file__).resolve().parents[3])
    os.environ.setdefault("GSA_EXP_ROOT", str(root))
    register_resolvers()
    with initialize_config_dir(config_dir=str(root / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = tempfile.mkdtemp(prefix="gsa-bench-")
    return cfg


def prepared_model(cfg: DictConfig, datamodule: ArrayDataModule, device: torch.device) -> ImageClassifier:
    """The model ``train()`` would train (attention bank built from the training split), on ``device``."""
    model = build_model(cfg, datamodule.info)
    if model.attention.needs_training_data:
        model.attention.prepare(*datamodule.bank_images())
    return model.to(device)


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """What Lightning's ``precision`` does around forward passes: nothing, or bf16 autocast."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {list(PRECISIONS)}")
    if precision == "bf16-mixed":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def configured_optimizer(model: ImageClassifier) -> tuple[torch.optim.Optimizer, Any]:
    """The optimiser ``configure_optimizers`` builds (parameter groups included) and its scheduler or None."""
    configured = model.configure_optimizers()
    if isinstance(configured, dict):
        return configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    return configured, None


@dataclass
class StepFunctions:
    """One model's training step and eval forward on a fixed batch."""

    train: Callable[[], None]
    infer: Callable[[], None]


def step_functions(model: ImageClassifier, images: Tensor, labels: Tensor, precision: str) -> StepFunctions:
    device = images.device
    optimizer, _ = configured_optimizer(model)

    def train() -> None:
        if not model.training:  # a mode switch walks every module: not part of a step
            model.train()
        optimizer.zero_grad(set_to_none=True)
        with autocast(precision, device):
            loss, _ = model.training_loss(images, labels)
        loss.backward()
        optimizer.step()

    def infer() -> None:
        if model.training:
            model.eval()
        with torch.inference_mode(), autocast(precision, device):
            model(images)

    return StepFunctions(train=train, infer=infer)


def fixed_batch(datamodule: ArrayDataModule, batch_size: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """The first ``batch_size`` training images as the model receives them (floats in [0, 1]) and their labels."""
    split = datamodule.split("train")
    images = datamodule.to_model_input(split.images[:batch_size].to(device), train=True)
    return images, split.labels[:batch_size].to(device)
