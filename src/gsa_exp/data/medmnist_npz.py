"""MedMNIST 2D data sets, read from their official ``.npz`` files.

Files are ``{root}/{flag}.npz`` (28 px) or ``{root}/{flag}_{size}.npz`` (64, 128, 224 px),
with keys ``{split}_images`` (uint8 N x H x W, or N x H x W x 3 for colour data sets) and
``{split}_labels`` (N x L integers) for the splits train, val and test. The ``medmnist``
package supplies the metadata (task, channels, label names) and, with ``download=true``,
fetches a missing file. The arrays are mapped from the file (``npz_members``), not loaded
whole, rather than read through the package's dataset classes, which load everything and
insist on the official sample counts.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch
from medmnist.info import HOMEPAGE, INFO

from gsa_exp.data.files import DataError, DataFormatError, DataNotFoundError, ResolvedPath, literal
from gsa_exp.data.npz_members import NpzCacheError, map_npz_members, npz_keys
from gsa_exp.data.registry import register_source
from gsa_exp.data.splits import MULTICLASS, MULTILABEL, SPLITS, LoadedData, Split
from gsa_exp.option_schema import check_options
from gsa_exp.options.data import MedMNISTOptions

TASK_TYPES = {
    "multi-class": MULTICLASS,
    "binary-class": MULTICLASS,
    "ordinal-regression": MULTICLASS,  # trained and scored as multi-class, as MedMNIST does
    "multi-label, binary-class": MULTILABEL,
}
FLAGS_2D = tuple(flag for flag, info in INFO.items() if info["task"] in TASK_TYPES and not flag.endswith("3d"))


@register_source("medmnist")
class MedMNISTSource:
    """One MedMNIST 2D data set (``flag``) at one resolution (``size``), from ``root``."""

    def __init__(self, *, flag: str, size: int, root: str, download: bool, as_rgb: bool, cache_dir: str | None) -> None:
        options = dict(flag=flag, size=size, root=root, download=download, as_rgb=as_rgb, cache_dir=cache_dir)
        check_options(MedMNISTOptions, options, DataError, prefix="source.")
        if flag not in FLAGS_2D:
            raise DataError(
                f"$source.flag={literal(repr(flag))}: not a MedMNIST 2D data set; "
                f"allowed: {literal(', '.join(FLAGS_2D))}"
            )
        self.flag = flag
        self.size = size
        self.root = ResolvedPath.resolve("root", root)
        self.download = download
        self.as_rgb = as_rgb
        self.cache_dir = None if cache_dir is None else ResolvedPath.resolve("source.cache_dir", cache_dir).path
        info = INFO[flag]
        self.task = TASK_TYPES[info["task"]]
        self.channels = int(info["n_channels"])
        self.label_names = [info["label"][str(index)] for index in range(len(info["label"]))]
        suffix = "" if size == 28 else f"_{size}"
        self.filename = f"{flag}{suffix}.npz"
        self.url = info[f"url{suffix}"]

    @property
    def path(self) -> Path:
        return self.root.path / self.filename

    def load(self) -> LoadedData:
        if not self.path.is_file():
            if not self.download:
                raise DataNotFoundError(
                    f"MedMNIST file not found: {self.root.describe(self.path)}. Download {literal(self.url)} "
                    f"(see {literal(HOMEPAGE)}) into {literal(self.root.path)}, or set $source.download=true "
                    "to fetch it through the medmnist package"
                )
            self._fetch()
        arrays = self._read()
        splits = {name: self._split(arrays, name) for name in SPLITS}
        return LoadedData(**splits, task=self.task, label_names=list(self.label_names))

    # -- reading and checking ---------------------------------------------------------
    def _fetch(self) -> None:
        import medmnist

        self.root.path.mkdir(parents=True, exist_ok=True)
        dataset_class = getattr(medmnist, INFO[self.flag]["python_class"])
        try:
            dataset_class(split="train", download=True, root=str(self.root.path), size=self.size)
        except Exception as error:  # the package reports network and checksum failures its own way
            raise DataNotFoundError(
                f"could not download {literal(self.url)} into {self.root.describe()}: {literal(error)}"
            ) from error

    def _read(self) -> dict[str, np.ndarray]:
        where = self.root.describe(self.path)
        keys = [f"{split}_{kind}" for split in SPLITS for kind in ("images", "labels")]
        try:
            found = npz_keys(self.path)
            arrays = map_npz_members(self.path, keys, self.cache_dir)
        except NpzCacheError:
            raise
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            raise DataFormatError(f"{where}: cannot read it as a MedMNIST .npz archive ({literal(error)})") from error
        missing = [key for key in keys if key not in arrays]
        if missing:
            raise DataFormatError(
                f"{where}: key {literal(repr(missing[0]))} is missing (keys found: {literal(found)}); "
                f"a MedMNIST file holds {literal(', '.join(keys))}"
            )
        return arrays

    def _split(self, arrays: dict[str, np.ndarray], split: str) -> Split:
        where = self.root.describe(self.path)
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        count = images.shape[0] if images.ndim else 0
        pixels = (self.size, self.size) if self.channels == 1 else (self.size, self.size, 3)
        _check_array(
            where, f"{split}_images", images, ("N", *pixels), np.uint8, f"{literal(self.flag)} at size {self.size}"
        )
        if count == 0:
            raise DataFormatError(f"{where}: {literal(split)}_images holds no images; every split needs at least one")
        width = len(self.label_names) if self.task == MULTILABEL else 1
        _check_array(
            where,
            f"{split}_labels",
            labels,
            (count, width),
            np.integer,
            f"one row per image of {literal(split)}_images",
        )
        self._check_label_values(where, split, labels)

        # Views of the memory-mapped file, never copies: a batch reads only its own images.
        tensor = torch.from_numpy(images)
        tensor = tensor.unsqueeze(1) if self.channels == 1 else tensor.permute(0, 3, 1, 2)
        if self.as_rgb and self.channels == 1:
            tensor = tensor.expand(-1, 3, -1, -1)
        if self.task == MULTILABEL:
            targets = torch.from_numpy(labels.astype(np.float32))
        else:
            targets = torch.from_numpy(labels[:, 0].astype(np.int64))
        return Split(images=tensor, labels=targets)

    def _check_label_values(self, where: str, split: str, labels: np.ndarray) -> None:
        high = 1 if self.task == MULTILABEL else len(self.label_names) - 1
        bad = np.argwhere((labels < 0) | (labels > high))
        if not bad.size:
            return
        row, column = bad[0]
        value = labels[row, column]
        if self.task == MULTILABEL:
            raise DataFormatError(
                f"{where}: {literal(split)} labels contain {literal(value)} (row {row}, label {column} "
                f"{literal(repr(self.label_names[column]))}); {literal(self.flag)} is multi-label: "
                "allowed values are 0 and 1"
            )
        raise DataFormatError(
            f"{where}: {literal(split)} labels contain {literal(value)} (row {row}); "
            f"allowed class indices for {literal(self.flag)} are 0..{high} ({len(self.label_names)} classes)"
        )


def _check_array(where: str, key: str, array: np.ndarray, shape: tuple, dtype: type, note: str) -> None:
    """``shape`` entries are sizes, or "N" for any count; ``dtype`` a NumPy type or abstract kind.

    ``where`` and ``note`` are parts of the error's template (``literal`` values in them).
    """
    expected = "(" + ", ".join(map(str, shape)) + ")"
    fits = array.ndim == len(shape) and all(want == "N" or have == want for have, want in zip(array.shape, shape))
    if not fits:
        raise DataFormatError(
            f"{where}: {literal(key)} has shape {literal(tuple(array.shape))}, expected {literal(expected)} ({note})"
        )
    if not np.issubdtype(array.dtype, dtype):
        wanted = "uint8" if dtype is np.uint8 else "an integer type"
        raise DataFormatError(f"{where}: {literal(key)} has dtype {literal(array.dtype)}, expected {wanted}")
