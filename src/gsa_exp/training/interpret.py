"""What a run's attention shows: its map, the maps of a fixed sample of test images, overlays.

Which map, which images, what the grid shows: docs/method.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gsa_exp.attention import MapReporting, shared_map_of
from gsa_exp.data.splits import MULTICLASS
from gsa_exp.durable import durable_open, save_figure
from gsa_exp.run_files import OVERLAYS_PNG, SAMPLES_NPZ
from gsa_exp.training.outputs import save_attention_map


class MapMean:
    """Running mean of per-image maps (N x H x W batches) over an evaluation loop."""

    def __init__(self) -> None:
        self.total: Tensor | None = None
        self.count = 0

    def add(self, maps: Tensor | None) -> None:
        if maps is None or maps.shape[0] == 0:
            return
        batch_total = maps.detach().float().sum(dim=0)
        self.total = batch_total if self.total is None else self.total + batch_total
        self.count += maps.shape[0]

    def value(self, reduce: Callable[[Tensor], Tensor] | None = None) -> Tensor | None:
        """The mean map; ``reduce`` sums a tensor over processes (data-parallel evaluation)."""
        if self.total is None:
            return None
        total, count = self.total, torch.tensor(float(self.count), device=self.total.device)
        if reduce is not None:
            total, count = reduce(total), reduce(count)
        return total / count


def attention_label(model: Any) -> str:
    """'global', 'local (placement=stages)', 'global (bank.source=batch)'... for titles."""
    options = model.hparams.attention
    label = str(options.get("name", type(model.attention).__name__))
    details = []
    if options.get("placement") not in (None, "input"):
        details.append(f"placement={options['placement']}")
    if (options.get("bank") or {}).get("source") not in (None, "train"):
        details.append(f"bank.source={options['bank']['source']}")
    return f"{label} ({', '.join(details)})" if details else label


def map_title(model: Any, averaged_over: int | None) -> str:
    label = attention_label(model)
    if averaged_over is None:
        return f"{label} attention map"
    return f"{label} attention: mean map over {averaged_over} test images"


def mean_map(model: Any, datamodule: Any) -> tuple[Tensor | None, int]:
    """The mean over the test split of the maps its images got (None for shared-map variants), and the image count."""
    mean = MapMean()
    with evaluating(model):
        for images, _ in datamodule.test_dataloader():
            model.infer(datamodule.to_model_input(images.to(model.device), train=False))
            mean.add(model.attention_maps)
    return mean.value(), mean.count


def run_map(model: Any, datamodule: Any) -> tuple[Tensor | None, str]:
    """The run's map and its title: the shared map, or the mean over the test split."""
    shared = shared_map_of(model.attention)
    if shared is not None:
        return shared, map_title(model, None)
    averaged, count = mean_map(model, datamodule)
    return averaged, map_title(model, count)


@contextmanager
def evaluating(model: Any) -> Iterator[Any]:
    """Eval mode, no gradients and a fresh evaluation context for the block; the mode is restored after."""
    training = model.training
    model.eval()
    model.reset_eval_context()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.reset_eval_context()
        model.train(training)


# -- the fixed sample -------------------------------------------------------------------------
@dataclass
class Sample:
    """A fixed sample of test images, grouped in rows (one per class), and the map each got."""

    images: Tensor  # N x C x H x W, floats in [0, 1]
    labels: Tensor
    rows: list[tuple[str, list[int]]]  # (class name, positions in images)
    maps: Tensor  # N x H x W


def sample_rows(labels: Tensor, task: str, names: list[str], per_class: int) -> list[tuple[str, list[int]]]:
    """The first ``per_class`` indices of every class (multi-label: every label present), in split order."""
    rows = []
    for index, name in enumerate(names):
        members = labels == index if task == MULTICLASS else labels[:, index] > 0.5
        chosen = torch.nonzero(members).flatten()[:per_class].tolist()
        if chosen:
            rows.append((name, chosen))
    return rows


def take_sample(model: Any, datamodule: Any, attention_map: Tensor, per_class: int) -> Sample | None:
    """Pick the fixed sample from the test split and give every image its map; None without samples."""
    split, info = datamodule.split("test"), datamodule.info
    rows = sample_rows(split.labels, info.task, list(info.label_names), per_class)
    if not rows:
        return None
    order = [index for _, chosen in rows for index in chosen]
    images = datamodule.to_model_input(split.images[torch.tensor(order)], train=False)
    positions, start = [], 0
    for name, chosen in rows:
        positions.append((name, list(range(start, start + len(chosen)))))
        start += len(chosen)
    maps = None
    if isinstance(model.attention, MapReporting) and model.attention.image_specific:
        with evaluating(model):
            model.infer(images.to(model.device))
            maps = model.attention_maps
    if maps is None:
        maps = attention_map.expand(len(order), -1, -1)
    return Sample(
        images=images.cpu(), labels=split.labels[torch.tensor(order)], rows=positions, maps=maps.float().cpu()
    )


# -- figures ------------------------------------------------------------------------------
def overlay_figure(sample: Sample, attention_map: Tensor, title: str) -> Any:
    """The grid: a row per class, the run's map first, then each image with its map over it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_values = attention_map.detach().float().cpu().numpy()
    maps = sample.maps.numpy()
    low, high = float(min(run_values.min(), maps.min())), float(max(run_values.max(), maps.max()))
    if high - low < 1e-3:  # a uniform map: show it on a narrow band around its value
        low, high = low - 0.05, high + 0.05
    columns = 1 + max(len(chosen) for _, chosen in sample.rows)
    figure, axes = plt.subplots(
        len(sample.rows), columns, figsize=(1.6 * columns + 1.0, 1.6 * len(sample.rows) + 0.6), squeeze=False, dpi=100
    )
    shown = None
    for row, (name, chosen) in enumerate(sample.rows):
        shown = axes[row, 0].imshow(run_values, cmap="jet", vmin=low, vmax=high, interpolation="nearest")
        axes[row, 0].set_ylabel(name, fontsize=8)
        for column, position in enumerate(chosen, start=1):
            axis = axes[row, column]
            show_image(axis, sample.images[position].numpy())
            axis.imshow(maps[position], cmap="jet", alpha=0.45, vmin=low, vmax=high, interpolation="bilinear")
    axes[0, 0].set_title("map", fontsize=8)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
        if not axis.images:
            axis.set_visible(False)
    figure.colorbar(shown, ax=axes.ravel().tolist(), fraction=0.03, pad=0.02)
    figure.suptitle(title, fontsize=9)
    return figure


def show_image(axis: Any, image: np.ndarray) -> None:
    """A C x H x W image in [0, 1]: RGB, or grey."""
    if image.shape[0] == 3:
        axis.imshow(image.transpose(1, 2, 0).clip(0, 1), interpolation="nearest")
    else:
        axis.imshow(image[0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")


def figure_pixels(figure: Any) -> np.ndarray:
    """The rendered figure as H x W x 3 uint8 (for TensorBoard)."""
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


def write_attention_outputs(
    model: Any, datamodule: Any, attention_map: Tensor, title: str, directory: Path, per_class: int
) -> tuple[list[Path], np.ndarray | None]:
    """The map (.npy, .png), the fixed sample's maps (.npz) and the overlay grid (.png) in ``directory``.

    Returns the written paths and the overlay grid's pixels (None when the data module
    cannot provide test images).
    """
    import matplotlib.pyplot as plt

    paths = save_attention_map(attention_map, directory, title)
    if not (hasattr(datamodule, "split") and hasattr(datamodule, "to_model_input")):
        return paths, None
    sample = take_sample(model, datamodule, attention_map.detach().float().cpu(), per_class)
    if sample is None:
        return paths, None
    with durable_open(directory / SAMPLES_NPZ, "wb") as stream:
        np.savez_compressed(
            stream,
            images=sample.images.numpy().astype(np.float32),
            labels=sample.labels.numpy(),
            maps=sample.maps.numpy().astype(np.float32),
            map=attention_map.detach().float().cpu().numpy(),
            row_names=np.array([name for name, _ in sample.rows]),
        )
    figure = overlay_figure(sample, attention_map, title)
    save_figure(figure, directory / OVERLAYS_PNG)
    pixels = figure_pixels(figure)
    plt.close(figure)
    return [*paths, directory / SAMPLES_NPZ, directory / OVERLAYS_PNG], pixels
