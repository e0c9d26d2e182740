"""Files a run leaves behind: metrics.json, per-image predictions, the attention map as .npy and .png; the
compared hyper-parameters (``flat_hparams``) that every logger gets (``gsa_exp.tracking``)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from gsa_exp.durable import durable_open, save_figure, write_json, write_text
from gsa_exp.model.classifier import ImageClassifier
from gsa_exp.run_files import MAP_NPY, MAP_PNG, PREDICTIONS_FILE, TARGETS_FILE

log = logging.getLogger(__name__)

HPARAM_GROUPS = ("dataset", "backbone", "attention", "scheme", "optimizer", "scheduler", "loss")
HPARAM_KEYS = ("seed", "scheduler_interval", "trainer.max_epochs", "trainer.precision")
INSTANTIATION_KEYS = ("_target_", "_partial_")  # how Hydra builds a node, not hyper-parameters


def write_predictions(run_dir: Path, split: str, outputs: tuple[Tensor, Tensor] | None) -> Path | None:
    """``predictions_<split>.csv`` and ``targets_<split>.csv``: one row per image, in data-set order.

    ``predictions``: ``index,score_0,...,score_K-1`` without a header, the layout
    ``medmnist.Evaluator.parse_and_evaluate`` reads (the numbers ``pd.DataFrame(y_score).to_csv(header=None)``
    writes). The columns are the classes (softmax probabilities) or, for multi-label data, the
    labels (sigmoids), in the order of the data set's label names. ``targets``: ``index,label``
    (multi-label: one 0/1 column per label), so predictions can be re-scored without the data.
    """
    if outputs is None:
        return None
    probabilities, targets = outputs
    path = run_dir / PREDICTIONS_FILE.format(split=split)
    _write_rows(path, probabilities.tolist(), "{:.8g}")
    _write_rows(run_dir / TARGETS_FILE.format(split=split), targets.reshape(len(targets), -1).tolist(), "{:d}")
    return path


def _write_rows(path: Path, rows: list[list[Any]], number: str) -> None:
    lines = (f"{index}," + ",".join(number.format(value) for value in row) for index, row in enumerate(rows))
    write_text(path, "\n".join(lines) + "\n")


def write_split_predictions(
    trainer: pl.Trainer, model: ImageClassifier, run_dir: Path, splits: tuple[str, ...]
) -> None:
    """The per-image predictions of the splits just evaluated (single-process runs: ranks see shards)."""
    if trainer.world_size > 1:
        log.info("Per-image predictions are written by single-process runs only (this run has %d)", trainer.world_size)
        return
    for split in splits:
        path = write_predictions(run_dir, split, model.evaluated_outputs(split))
        if path is not None:
            log.info("Predictions: %s", path)


def add_confusion_matrix(path: Path, trainer: pl.Trainer, model: ImageClassifier, stage: str = "test") -> None:
    """Adds ``<stage>/confusion_matrix`` (counts, label names, what rows and columns are) to a written metrics.json.

    The one entry of metrics.json that is not a number, so it stays out of the scalars
    that ``train()`` and ``evaluate()`` return (and TensorBoard's HPARAMS lists). Single-process
    runs: with ``ddp_spawn`` the counts stay in the worker processes (their recall scalars
    and the TensorBoard picture do not).
    """
    entry = model.confusion_entry(stage)
    if entry is None:
        if trainer.world_size > 1:
            log.info("The %s confusion matrix is in TensorBoard; metrics.json gets it from single-process runs", stage)
        return
    values = json.loads(path.read_text())
    values[f"{stage}/confusion_matrix"] = entry
    write_json(path, values)


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Plain floats from Lightning's logged metrics (tensors), sorted by name."""
    values = {}
    for key, value in metrics.items():
        number = float(value.item() if isinstance(value, Tensor) else value)
        values[key] = number if math.isfinite(number) else float("nan")
    return dict(sorted(values.items()))


def save_attention_map(attention_map: Tensor, directory: Path, title: str) -> list[Path]:
    """The map as raw values (.npy, float32) and as a colour figure (.png)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = attention_map.detach().float().cpu().numpy().astype(np.float32)
    npy, png = directory / MAP_NPY, directory / MAP_PNG
    with durable_open(npy, "wb") as stream:
        np.save(stream, values)
    figure, axis = plt.subplots(figsize=(4.2, 3.6), dpi=100)
    shown = axis.imshow(values, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    axis.set_title(title, fontsize=9)
    axis.set_axis_off()
    figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.04)
    figure.tight_layout()
    save_figure(figure, png)
    plt.close(figure)
    return [npy, png]


def group_choices() -> dict[str, str]:
    """The option chosen in each config group of this Hydra run (``hydra.runtime.choices``); {} outside one."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    return {str(group): str(option) for group, option in HydraConfig.get().runtime.choices.items()}


def flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The hyper-parameters worth comparing across runs, flattened to TensorBoard-friendly scalars.

    A group whose node has no ``name`` (the optimizer and scheduler hold only constructor
    arguments) is labelled ``<group>.name`` by the option chosen for it.
    """
    flat: dict[str, Any] = {}

    def visit(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key not in INSTANTIATION_KEYS:
                    visit(f"{prefix}.{key}" if prefix else str(key), value)
        elif isinstance(node, (bool, int, float, str)):
            flat[prefix] = node
        else:
            flat[prefix] = str(node)

    choices = group_choices()
    for group in HPARAM_GROUPS:
        node = OmegaConf.to_container(cfg[group], resolve=True) if cfg.get(group) is not None else "none"
        visit(group, node)
        if isinstance(node, dict) and "name" not in node and group in choices:
            flat[f"{group}.name"] = choices[group]
    for key in HPARAM_KEYS:
        visit(key, OmegaConf.select(cfg, key))
    return flat
