"""Any directory of class sub-folders (e.g. a hospital's own images), read with PIL.

Two layouts are understood:

* ``root/train/<class>/...``, ``root/val/<class>/...``, ``root/test/<class>/...``: the
  splits are given; the classes are the class folders of ``train/``.
* ``root/<class>/...``: the images of each class are shuffled with ``seed`` and split by
  ``split_ratios`` (train, val, test), class by class, so every split keeps the class mix.

Class names are the folder names, in sorted order (label 0 is the first). Files whose
suffix is not in ``extensions`` (case-insensitive) and hidden files are ignored. Every
image is converted to ``channels`` (1 grey, 3 RGB) and resized (stretched) to
``image_size`` x ``image_size`` when read, so images of any size can be mixed. Images of
more than 8 bits per pixel (16-bit or float TIFFs) are scaled to 0..255 per image by
their own minimum and maximum.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gsa_exp.data.files import DataError, DataFormatError, DataNotFoundError, ResolvedPath, listing, literal
from gsa_exp.data.image_files import READ_ERRORS, open_as_8bit
from gsa_exp.data.registry import register_source
from gsa_exp.data.splits import MULTICLASS, SPLITS, LoadedData, Split
from gsa_exp.option_schema import check_options
from gsa_exp.options.data import ImageFolderOptions

LAYOUTS = "root/<class>/<image> or root/{train,val,test}/<class>/<image>"


@register_source("image_folder")
class ImageFolderSource:
    """Images under ``root`` in class sub-folders, with given or seeded stratified splits."""

    def __init__(
        self,
        *,
        root: str,
        split_ratios: Sequence[float],
        seed: int,
        channels: int,
        image_size: int,
        extensions: Sequence[str],
    ) -> None:
        ratios = [float(ratio) for ratio in split_ratios]
        if len(ratios) != 3 or min(ratios) <= 0 or abs(sum(ratios) - 1) > 1e-6:
            raise DataError(
                f"$source.split_ratios={literal(list(split_ratios))}: must be three positive fractions "
                "(train, val, test) that sum to 1"
            )
        options = dict(root=root, split_ratios=split_ratios, seed=seed, channels=channels, image_size=image_size)
        check_options(ImageFolderOptions, {**options, "extensions": extensions}, DataError, prefix="source.")
        if not extensions:
            raise DataError("$source.extensions=[]: list the image file suffixes to read, e.g. [.png, .jpg]")
        self.root = ResolvedPath.resolve("root", root)
        self.split_ratios = ratios
        self.seed = seed
        self.channels = channels
        self.image_size = image_size
        self.extensions = sorted({"." + extension.lower().lstrip(".") for extension in extensions})

    def load(self) -> LoadedData:
        where = self.root.describe()
        if not self.root.path.is_dir():
            raise DataNotFoundError(
                f"image folder not found: {where}. Expected a directory laid out as {literal(LAYOUTS)}"
            )
        files, classes = self._find_files(where)
        unreadable: list[str] = []
        splits = {split: self._read_split(files[split], classes, unreadable) for split in SPLITS}
        if unreadable:
            raise DataFormatError(f"{where}: " + listing(unreadable, "image files could not be read"))
        return LoadedData(**splits, task=MULTICLASS, label_names=classes)

    # -- finding the files ------------------------------------------------------------
    def _find_files(self, where: str) -> tuple[dict[str, list[tuple[Path, str]]], list[str]]:
        """(path, class) pairs per split, and the sorted class names; ``where`` is ``self.root.describe()``."""
        present = {path.name for path in _folders(self.root.path)} & set(SPLITS)
        if present:
            if present != set(SPLITS):
                missing = [split for split in SPLITS if split not in present]
                raise DataFormatError(
                    f"{where}: has {literal(', '.join(f'{s}/' for s in SPLITS if s in present))} but no "
                    f"{literal(', '.join(f'{s}/' for s in missing))}; a pre-split folder needs train/, val/ and test/"
                )
            by_split = {split: self._scan(self.root.path / split) for split in SPLITS}
            classes = self._check_classes(where, by_split["train"], "train/")
            for split in ("val", "test"):
                unknown = sorted(set(by_split[split]) - set(classes))
                if unknown:
                    raise DataFormatError(
                        f"{where}: {literal(split)}/ has class folders that train/ lacks: {literal(unknown)}"
                    )
                if not by_split[split]:
                    raise DataFormatError(
                        f"{where}: {literal(split)}/ holds no images with extensions {literal(self.extensions)} "
                        "in class sub-folders"
                    )
            return {split: _pairs(by_split[split]) for split in SPLITS}, classes
        by_class = self._scan(self.root.path)
        classes = self._check_classes(where, by_class, "")
        return self._stratified(where, by_class), classes

    def _scan(self, directory: Path) -> dict[str, list[Path]]:
        """Class name -> its image files (sorted, any depth below the class folder)."""
        found = {}
        for folder in _folders(directory):
            images = sorted(
                path
                for path in folder.rglob("*")
                if path.suffix.lower() in self.extensions
                and not any(part.startswith(".") for part in path.relative_to(folder).parts)
                and path.is_file()
            )
            if images:
                found[folder.name] = images
        return found

    def _check_classes(self, where: str, by_class: dict[str, list[Path]], prefix: str) -> list[str]:
        if not by_class:
            raise DataFormatError(
                f"{where}: found no images with extensions {literal(self.extensions)} in "
                f"{literal(prefix or 'its ')}class sub-folders; expected {literal(LAYOUTS)}"
            )
        if len(by_class) == 1:
            name, images = next(iter(by_class.items()))
            raise DataFormatError(
                f"{where}: found a single class folder ({literal(prefix + name)}, {len(images)} images); "
                "a classifier needs at least 2 classes, one sub-folder per class"
            )
        return sorted(by_class)

    def _stratified(self, where: str, by_class: dict[str, list[Path]]) -> dict[str, list[tuple[Path, str]]]:
        generator = np.random.default_rng(self.seed)
        splits: dict[str, list[tuple[Path, str]]] = {split: [] for split in SPLITS}
        for name in sorted(by_class):
            images = [by_class[name][index] for index in generator.permutation(len(by_class[name]))]
            count = len(images)
            num_val = int(np.floor(count * self.split_ratios[1] + 0.5))
            num_test = int(np.floor(count * self.split_ratios[2] + 0.5))
            num_train = max(count - num_val - num_test, 0)
            bounds = {
                "train": (0, num_train),
                "val": (num_train, num_train + num_val),
                "test": (num_train + num_val, count),
            }
            for split, (start, stop) in bounds.items():
                splits[split].extend((path, name) for path in images[start:stop])
        for split in SPLITS:
            if not splits[split]:
                total = sum(len(images) for images in by_class.values())
                raise DataFormatError(
                    f"{where}: $source.split_ratios={literal(self.split_ratios)} leave the {literal(split)} split empty; "
                    f"{total} images in {len(by_class)} classes are too few"
                )
        return splits

    # -- reading the images -----------------------------------------------------------
    def _read_split(self, pairs: list[tuple[Path, str]], classes: list[str], unreadable: list[str]) -> Split:
        index = {name: label for label, name in enumerate(classes)}
        images = np.zeros((len(pairs), self.channels, self.image_size, self.image_size), dtype=np.uint8)
        for row, (path, _) in enumerate(pairs):
            try:
                images[row] = self._read_image(path)
            except READ_ERRORS as error:
                reason = str(error).replace(f" {str(path)!r}", "").strip()  # PIL repeats the path
                unreadable.append(f"{path}: {reason or type(error).__name__}")
        labels = torch.tensor([index[name] for _, name in pairs], dtype=torch.int64)
        return Split(images=torch.from_numpy(images), labels=labels)

    def _read_image(self, path: Path) -> np.ndarray:
        image = open_as_8bit(path, self.channels)
        if image.size != (self.image_size, self.image_size):
            image = image.resize((self.image_size, self.image_size), Image.Resampling.BILINEAR)
        array = np.asarray(image, dtype=np.uint8)
        return array[None] if self.channels == 1 else array.transpose(2, 0, 1)


def _folders(directory: Path) -> list[Path]:
    return sorted(path for path in directory.iterdir() if path.is_dir() and not path.name.startswith("."))


def _pairs(by_class: dict[str, list[Path]]) -> list[tuple[Path, str]]:
    return [(path, name) for name in sorted(by_class) for path in by_class[name]]
