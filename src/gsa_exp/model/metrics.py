"""Classification metrics from torchmetrics, defined the way MedMNIST's evaluator defines them."""

from __future__ import annotations

from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassF1Score,
    MulticlassRecall,
    MultilabelAccuracy,
    MultilabelAUROC,
    MultilabelF1Score,
    MultilabelRecall,
    MultilabelSpecificity,
)
from torchmetrics.functional.classification import binary_auroc

from gsa_exp.data.splits import MULTICLASS, MULTILABEL


def classification_metrics(task: str, num_classes: int, prefix: str) -> MetricCollection:
    """The four metrics every run logs, fed with probabilities (softmax or sigmoid).

    Multi-class (binary and ordinal included): acc = plain accuracy of the arg-max,
    bal_acc = macro recall, auroc = macro one-vs-rest AUROC, f1 = macro F1 — MedMNIST's
    ACC and AUC. Multi-label: each label on its own at threshold 0.5, then the mean over
    labels (MedMNIST's ACC and AUC for ChestMNIST); bal_acc = mean of (recall + specificity) / 2.
    """
    if task == MULTICLASS:
        metrics = {
            "acc": MulticlassAccuracy(num_classes=num_classes, average="micro"),
            "bal_acc": MulticlassRecall(num_classes=num_classes, average="macro"),
            "auroc": MulticlassAUROC(num_classes=num_classes, average="macro"),
            "f1": MulticlassF1Score(num_classes=num_classes, average="macro"),
        }
    elif task == MULTILABEL:
        metrics = {
            "acc": MultilabelAccuracy(num_labels=num_classes, average="macro"),
            "bal_acc": (
                MultilabelRecall(num_labels=num_classes, average="macro")
                + MultilabelSpecificity(num_labels=num_classes, average="macro")
            )
            / 2,
            "auroc": MultilabelAUROC(num_labels=num_classes, average="macro"),
            "f1": MultilabelF1Score(num_labels=num_classes, average="macro"),
        }
    else:
        raise ValueError(f"no metric definition for task {task!r}")
    return MetricCollection(metrics, prefix=prefix)


def map_auroc(attention_map: Tensor, region_mask: Tensor) -> Tensor:
    """How well a map ranks the ground-truth region's pixels above the rest (0.5 = chance, 1 = perfect)."""
    if attention_map.shape != region_mask.shape:
        raise ValueError(f"map {tuple(attention_map.shape)} and mask {tuple(region_mask.shape)} differ in shape")
    return binary_auroc(attention_map.flatten().float(), region_mask.flatten().long().to(attention_map.device))
