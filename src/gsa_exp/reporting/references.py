"""Published numbers to read a sweep against: MedMNIST v2's ResNet-18 (28) test ACC and AUC.

For scale only, not a paired comparison (docs/statistics.md).
"""

from __future__ import annotations

from collections.abc import Iterable

SOURCE = "MedMNIST v2, ResNet-18 (28)"
CITATION = (
    'J. Yang, R. Shi, D. Wei, Z. Liu, L. Zhao, B. Ke, H. Pfister, B. Ni: "MedMNIST v2 - A large-scale '
    'lightweight benchmark for 2D and 3D biomedical image classification", Scientific Data 10, 41 (2023)'
)
SHORT_CITATION = "Yang et al. 2023, Scientific Data"
# dataset.name -> {logged metric: published value} (their Table: ResNet-18 (28), test ACC and AUC).
MEDMNIST_V2_RESNET18_28: dict[str, dict[str, float]] = {
    "pneumoniamnist": {"test/acc": 0.854, "test/auroc": 0.944},
    "octmnist": {"test/acc": 0.743, "test/auroc": 0.943},
    "breastmnist": {"test/acc": 0.863, "test/auroc": 0.901},
    "retinamnist": {"test/acc": 0.524, "test/auroc": 0.717},
    "chestmnist": {"test/acc": 0.947, "test/auroc": 0.768},
}


def reference(dataset: str, metric: str) -> float | None:
    """The published value for a data set and metric, or None when there is none."""
    return MEDMNIST_V2_RESNET18_28.get(dataset, {}).get(metric)


def matching(datasets: Iterable[str]) -> list[str]:
    """The data sets (of a sweep) that have reference numbers, in the given order."""
    return [dataset for dataset in datasets if dataset in MEDMNIST_V2_RESNET18_28]


def note(datasets: Iterable[str]) -> str:
    """The line results.md adds when references were asked for."""
    found = matching(datasets)
    if not found:
        known = ", ".join(MEDMNIST_V2_RESNET18_28)
        return f"References asked for, but no data set of this sweep has one (known: {known})."
    return (
        f"Reference columns ({SOURCE}): the published test ACC/AUC of one ResNet-18 at 28 px "
        f"({CITATION}); for scale only, not a paired comparison."
    )
