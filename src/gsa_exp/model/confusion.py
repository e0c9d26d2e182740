"""The confusion matrix of an evaluation loop: counts kept on the device, per-class recall, JSON and picture.

Summary metrics (accuracy, macro AUROC) hide which class a model gets wrong; the counts
and the recall of every class show it. The counts accumulate on the device during the
loop (one torchmetrics state, summed over processes on ``compute``) and are read back
once per loop. Multi-class: a K x K matrix, rows the true class, columns the predicted
class (arg-max). Multi-label: one 2 x 2 matrix per label, ``[[tn, fp], [fn, tp]]`` at
threshold 0.5, the way the multi-label metrics threshold.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.classification import MulticlassConfusionMatrix, MultilabelConfusionMatrix

from gsa_exp.data.splits import MULTICLASS, MULTILABEL

_TAG_UNSAFE = re.compile(r"[^-\w.]+")  # TensorBoard renames tags with other characters (and warns each time)


def confusion_metric(task: str, num_classes: int) -> Metric:
    """The counting metric of ``task``, fed with probabilities like the other metrics.

    ``validate_args=False``: the checks read values back from the device on every batch,
    and the inputs are the model's own probabilities and the data set's labels.
    """
    if task == MULTICLASS:
        return MulticlassConfusionMatrix(num_classes=num_classes, validate_args=False)
    if task == MULTILABEL:
        return MultilabelConfusionMatrix(num_labels=num_classes, validate_args=False)
    raise ValueError(f"no confusion matrix for task {task!r}")


def per_class_recall(counts: Tensor, task: str) -> Tensor:
    """Recall of every class (multi-label: every label), NaN for one without a single true example.

    NaN, not 0: a split without the class says nothing about it (torchmetrics' ``Recall(average=None)`` gives 0 or 1).
    """
    counts = counts.double()
    if task == MULTICLASS:
        hits, support = counts.diagonal(), counts.sum(dim=1)
    else:
        hits, support = counts[:, 1, 1], counts[:, 1].sum(dim=1)
    return torch.where(support > 0, hits / support.clamp(min=1), torch.full_like(hits, float("nan")))


def class_names(label_names: list[str], count: int) -> list[str]:
    """The data set's label names, or class_0, class_1, ... where it has none."""
    return list(label_names) if len(label_names) == count else [f"class_{index}" for index in range(count)]


def recall_keys(stage: str, names: list[str]) -> list[str]:
    """``<stage>/recall/<name>`` per class; characters TensorBoard refuses in tags become ``_``."""
    keys = [f"{stage}/recall/{_TAG_UNSAFE.sub('_', name.strip()) or 'class'}" for name in names]
    if len(set(keys)) < len(keys):  # names that differ only in such characters: number them
        keys = [f"{stage}/recall/{index}_{key.rsplit('/', 1)[1]}" for index, key in enumerate(keys)]
    return keys


def confusion_record(counts: Tensor, names: list[str], task: str) -> dict[str, Any]:
    """The counts as plain JSON values, with what their axes mean."""
    record: dict[str, Any] = {"labels": list(names), "counts": counts.long().cpu().tolist()}
    if task == MULTICLASS:
        record.update(rows="true label", columns="predicted label")
    else:
        record.update(rows="per label: true 0, 1", columns="per label: predicted 0, 1")
    return record


def confusion_pixels(counts: Tensor, names: list[str], task: str, title: str) -> np.ndarray:
    """The matrix drawn with its counts (H x W x 3 uint8, for TensorBoard); multi-label: one panel per label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = counts.long().cpu().numpy()
    if task == MULTICLASS:
        panels = [(values, names, names, "")]
    else:
        panels = [(values[index], ["0", "1"], ["0", "1"], name) for index, name in enumerate(names)]
    side = max(3.2, 0.5 * len(panels[0][1]) + 2.2)
    figure, axes = plt.subplots(1, len(panels), figsize=(side * len(panels), side + 0.4), squeeze=False, dpi=100)
    for axis, (matrix, rows, columns, label) in zip(axes[0], panels):
        axis.imshow(matrix, cmap="Blues", vmin=0, vmax=max(int(matrix.max()), 1))
        axis.set_xticks(range(len(columns)), [_short(name) for name in columns], rotation=45, ha="right", fontsize=7)
        axis.set_yticks(range(len(rows)), [_short(name) for name in rows], fontsize=7)
        axis.set_xlabel("predicted", fontsize=8)
        axis.set_ylabel("true", fontsize=8)
        if label:
            axis.set_title(_short(label), fontsize=8)
        middle = matrix.max() / 2
        for (row, column), count in np.ndenumerate(matrix):
            axis.text(
                column,
                row,
                str(count),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if count > middle else "black",
            )
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.canvas.draw()
    pixels = np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
    plt.close(figure)
    return pixels


def _short(name: str, limit: int = 18) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"
