"""Single image files (PNG, JPEG, TIFF through PIL; NumPy ``.npy``) as 8-bit grey or RGB pixels.

Shared by the image-folder data set and by prediction on new images, so both read a file
the same way: images of more than 8 bits per pixel (16-bit or float TIFFs, float or wide
integer arrays) are scaled to 0..255 per image by their own minimum and maximum; float
arrays already in [0, 1] are scaled by 255.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gsa_exp.data.preprocess import match_channels

HIGH_DEPTH_MODES = ("I", "F", "I;16", "I;16B", "I;16L", "I;16N")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
ARRAY_SUFFIXES = (".npy",)
READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def open_as_8bit(path: Path, channels: int) -> Image.Image:
    """The file as a loaded PIL image in mode L (``channels=1``) or RGB (3)."""
    with Image.open(path) as image:
        image.load()
        if image.mode in HIGH_DEPTH_MODES:
            image = rescale_to_8bit(image)
        return image.convert("L" if channels == 1 else "RGB")


def rescale_to_8bit(image: Image.Image) -> Image.Image:
    return Image.fromarray(_scaled_to_8bit(np.asarray(image, dtype=np.float64)))


def _scaled_to_8bit(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    return scaled.round().astype(np.uint8)


def read_image_file(path: Path, channels: int) -> torch.Tensor:
    """uint8 C x H x W pixels of one file, at its own size, converted to ``channels`` (1 or 3).

    ``.npy`` arrays may be H x W, H x W x C or C x H x W with C in (1, 3); anything else (and
    files that cannot be decoded) raises ``ValueError`` or ``OSError`` saying what was found.
    """
    if path.suffix.lower() in ARRAY_SUFFIXES:
        return match_channels(_array_pixels(np.load(path, allow_pickle=False))[None], channels)[0]
    # np.array, not np.asarray: PIL hands out a read-only view of its buffer, which torch.from_numpy
    # warns about (once per process: "The given NumPy array is not writable"); this is a copy torch owns
    array = np.array(open_as_8bit(path, channels), dtype=np.uint8)
    pixels = array[None] if channels == 1 else array.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(pixels))


def _array_pixels(array: np.ndarray) -> torch.Tensor:
    if array.ndim == 2:
        array = array[None]
    elif array.ndim == 3 and array.shape[-1] in (1, 3) and array.shape[0] not in (1, 3):
        array = array.transpose(2, 0, 1)
    if array.ndim != 3 or array.shape[0] not in (1, 3):
        raise ValueError(f"array of shape {array.shape}: expected H x W, H x W x C or C x H x W with 1 or 3 channels")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"array of dtype {array.dtype}: expected numbers")
    if array.dtype != np.uint8:
        finite = np.isfinite(array).all()
        if not finite:
            raise ValueError("array holds NaN or infinite values")
        in_unit_range = np.issubdtype(array.dtype, np.floating) and array.min() >= 0 and array.max() <= 1
        array = (array * 255.0).round().astype(np.uint8) if in_unit_range else _scaled_to_8bit(array.astype(np.float64))
    return torch.from_numpy(np.ascontiguousarray(array))
