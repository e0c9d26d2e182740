"""The options of the data module and its sources (``conf/dataset/``); checks that read files stay with the sources."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from gsa_exp.option_schema import AtLeast, InRange, OneOf, Options
from gsa_exp.options import declares

CHANNELS = OneOf((1, 3))
MEDMNIST_SIZES = (28, 64, 128, 224)


@dataclass(frozen=True)
class LoaderOptions:
    """The data module's own options (``conf/dataset_base/loader.yaml``), checked by ``ArrayDataModule`` too."""

    image_size: Annotated[int, AtLeast(1)]
    channels: Annotated[int | None, AtLeast(1)]
    batch_size: Annotated[int, AtLeast(1)]
    eval_batch_size: Annotated[int, AtLeast(1)]
    num_workers: Annotated[int, AtLeast(0)]
    pin_memory: bool


@dataclass(frozen=True)
class AugmentOptions(Options):
    """Training-time augmentation (``dataset.augment``); off by default: aligned anatomy is the premise."""

    hflip: bool
    max_shift: Annotated[int, AtLeast(0)]  # random translation of up to this many pixels


@declares("dataset", "synthetic")
@dataclass(frozen=True)
class SyntheticOptions(Options):
    image_size: Annotated[int, AtLeast(16)]
    channels: Annotated[int, CHANNELS]
    num_train: Annotated[int, AtLeast(2)]
    num_val: Annotated[int, AtLeast(2)]
    num_test: Annotated[int, AtLeast(2)]
    lesion_amplitude: float
    distractor_amplitude: float
    lesion_sigma: Annotated[float, AtLeast(0, strict=True)]
    region_radius: Annotated[float, InRange(0, 0.3, "()")]
    max_blobs: Annotated[int, AtLeast(1)]
    noise_std: Annotated[float, AtLeast(0)]
    jitter: Annotated[float, AtLeast(0)]
    seed: Annotated[int, AtLeast(0)]


@declares("dataset", "medmnist")
@dataclass(frozen=True)
class MedMNISTOptions(Options):
    flag: str  # checked against the medmnist package's data sets by the source
    size: Annotated[int, OneOf(MEDMNIST_SIZES)]
    root: str
    download: bool
    cache_dir: str | None
    as_rgb: bool


@declares("dataset", "fer2013")
@dataclass(frozen=True)
class FER2013Options(Options):
    path: str


@declares("dataset", "image_folder")
@dataclass(frozen=True)
class ImageFolderOptions(Options):
    root: str
    split_ratios: object  # three positive fractions (train, val, test) summing to 1: checked by the source
    seed: Annotated[int, AtLeast(0)]
    channels: Annotated[int, CHANNELS]
    image_size: Annotated[int, AtLeast(1)]
    extensions: object  # file suffixes to read
