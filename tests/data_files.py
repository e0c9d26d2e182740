"""Tiny data files in the exact formats of the real ones (MedMNIST .npz, FER2013 CSV, image folders)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from gsa_exp.data import ImageFolderSource, MedMNISTSource

COUNTS = {"train": 20, "val": 8, "test": 8}


def medmnist_arrays(size=28, colour=False, label_width=1, num_classes=2, seed=0) -> dict[str, np.ndarray]:
    """The official keys, dtypes and shapes: uint8 N x H x W (x 3) images, uint8 N x L labels."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in COUNTS.items():
        shape = (count, size, size, 3) if colour else (count, size, size)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, num_classes, (count, label_width), dtype=np.uint8)
    return arrays


def write_npz(root: Path, name: str, arrays: dict[str, np.ndarray]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(root / name, **arrays)
    return root / name


def medmnist_source(root, flag="pneumoniamnist", size=28, download=False, as_rgb=False) -> MedMNISTSource:
    return MedMNISTSource(flag=flag, size=size, root=str(root), download=download, as_rgb=as_rgb, cache_dir=None)


def fer_rows(seed=0) -> list[tuple[int, np.ndarray, str]]:
    rng = np.random.default_rng(seed)
    usages = ["Training"] * 12 + ["PublicTest"] * 5 + ["PrivateTest"] * 4
    return [(index % 7, rng.integers(0, 256, 48 * 48), usage) for index, usage in enumerate(usages)]


def write_fer(path: Path, rows, header="emotion,pixels,Usage") -> Path:
    lines = [header]
    for emotion, pixels, usage in rows:
        text = pixels if isinstance(pixels, str) else " ".join(map(str, pixels))
        fields = {"emotion": str(emotion), "pixels": text, "Usage": usage}
        lines.append(",".join(fields[name.strip()] if name.strip() in fields else "" for name in header.split(",")))
    path.write_text("\n".join(lines) + "\n")
    return path


def grey_level(label: int, index: int) -> int:
    return 20 + 100 * label + 5 * index  # identifies every image by its (uniform) value


def write_class_images(folder: Path, label: int, count: int, mode="RGB", size=(32, 32), suffix=".png") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        value = grey_level(label, index)
        Image.new(mode, size, (value,) * len(mode) if mode != "L" else value).save(folder / f"img{index:02d}{suffix}")


def image_folder(
    root, ratios=(0.6, 0.2, 0.2), seed=0, channels=3, size=32, extensions=(".png", ".JPG")
) -> ImageFolderSource:
    return ImageFolderSource(
        root=str(root),
        split_ratios=list(ratios),
        seed=seed,
        channels=channels,
        image_size=size,
        extensions=list(extensions),
    )


def image_ids(split) -> set[int]:
    return set(split.images[:, 0, 0, 0].tolist())
