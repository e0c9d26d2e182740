"""Accuracy and a confusion matrix for predictions of a folder laid out like an image-folder data set.

``input=test/`` with one sub-folder per class (``test/<class>/<image>``, as ``dataset=image_folder``
reads them) says what each image is. When every image lies under a sub-folder named exactly after
one of the model's classes, predict.py scores its predictions against those names; otherwise it
predicts only. Multi-label models are not scored (a folder names one class).
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gsa_exp.data.splits import MULTICLASS
from gsa_exp.durable import durable_open, write_json
from gsa_exp.model.confusion import confusion_record, per_class_recall
from gsa_exp.run_files import METRICS_FILE

log = logging.getLogger(__name__)
CONFUSION_CSV = "confusion_matrix.csv"


def folder_labels(folder: Path, files: list[Path], label_names: list[str], task: str) -> list[int] | None:
    """The class index of every file from its first sub-folder under ``folder``; None unless all have one."""
    if task != MULTICLASS or not label_names:
        return None
    index = {name: position for position, name in enumerate(label_names)}
    firsts = [file.relative_to(folder).parts[0] if file.parent != folder else None for file in files]
    labels = [index.get(first) for first in firsts]  # None: at the top, or in a folder of another name
    if None not in labels:
        return labels
    folders = sorted({first for first in firsts if first is not None})
    if folders:  # sub-folders, but not (all) named after the classes: say why nothing is scored
        log.warning(
            "No accuracy reported: not every image lies in a sub-folder named after one of the model's classes "
            "(%s); sub-folders found: %s",
            ", ".join(label_names),
            ", ".join(folders[:10]) + (", ..." if len(folders) > 10 else ""),
        )
    return None


def confusion_counts(labels: list[int], predicted: list[int], classes: int) -> Tensor:
    """K x K counts, rows the true class, columns the predicted one."""
    counts = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(labels), np.asarray(predicted)), 1)
    return torch.from_numpy(counts)


def score_against_folders(output_dir: Path, labels: list[int], scores: Tensor, label_names: list[str]) -> dict:
    """Writes ``metrics.json`` (accuracy, per-class recall, the confusion matrix) and ``confusion_matrix.csv``
    beside the predictions, and shows both; returns what metrics.json holds."""
    counts = confusion_counts(labels, scores.argmax(dim=1).tolist(), len(label_names))
    recall = per_class_recall(counts, MULTICLASS).tolist()
    metrics = {
        "acc": float(counts.diagonal().sum() / counts.sum()),
        "num_images": len(labels),
        "recall": dict(zip(label_names, recall)),
        "confusion_matrix": confusion_record(counts, label_names, MULTICLASS),
    }
    write_json(output_dir / METRICS_FILE, metrics)
    with durable_open(output_dir / CONFUSION_CSV, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["true \\ predicted", *label_names])
        writer.writerows([name, *row] for name, row in zip(label_names, counts.tolist()))
    log.info(
        "Accuracy %.4f on %d images (true classes from their folders)\n%s",
        metrics["acc"],
        len(labels),
        confusion_table(counts, label_names),
    )
    return metrics


def confusion_table(counts: Tensor, names: list[str]) -> str:
    """The matrix as aligned text: rows the true class, columns the predicted one."""
    rows = [["true \\ predicted", *names], *([name, *map(str, row)] for name, row in zip(names, counts.tolist()))]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in rows)
