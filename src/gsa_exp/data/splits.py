"""In-memory data splits and the facts about a data set that the model is built from."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

MULTICLASS = "multiclass"
MULTILABEL = "multilabel"
TASKS = (MULTICLASS, MULTILABEL)
SPLITS = ("train", "val", "test")


@dataclass
class Split:
    """Images as uint8 N x C x H x W; labels as int64 N (multi-class) or float N x L (multi-label)."""

    images: Tensor
    labels: Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"images must be a uint8 N x C x H x W tensor, got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.shape[0] != self.images.shape[0]:
            raise ValueError(f"{self.images.shape[0]} images but {self.labels.shape[0]} labels")

    def __len__(self) -> int:
        return self.images.shape[0]


@dataclass
class LoadedData:
    """What a data source hands to the data module."""

    train: Split
    val: Split
    test: Split
    task: str
    label_names: list[str]
    region_mask: Tensor | None = None  # H x W bool: where the class signal lives, when known

    def split(self, name: str) -> Split:
        return getattr(self, name)


@dataclass(frozen=True)
class DataInfo:
    """The facts a model is built from; saved in checkpoints so evaluation needs no training data."""

    task: str
    num_classes: int  # number of labels for multi-label tasks
    channels: int
    image_size: int
    num_train: int
    label_names: list[str] = field(default_factory=list)
    mean: list[float] = field(default_factory=lambda: [0.0])  # per-channel normalisation the model applies
    std: list[float] = field(default_factory=lambda: [1.0])

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task {self.task!r} is not one of {list(TASKS)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> DataInfo:
        return cls(**values)
