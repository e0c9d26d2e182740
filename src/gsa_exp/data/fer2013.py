"""FER2013 facial expressions, read from the challenge's CSV file.

One row per image: ``emotion`` (0..6), ``pixels`` (2304 space-separated grey values,
48 x 48, row-major) and ``Usage``: Training (train), PublicTest (validation) or
PrivateTest (test). The columns may come in any order (the ICML copy of the file orders
them emotion, Usage, pixels); their names must be exactly these three.
"""

from __future__ import annotations

import csv
import warnings

import numpy as np
import torch

from gsa_exp.data.files import DataFormatError, DataNotFoundError, ResolvedPath, listing, literal
from gsa_exp.data.registry import register_source
from gsa_exp.data.splits import MULTICLASS, SPLITS, LoadedData, Split

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
USAGE_SPLITS = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
COLUMNS = ("emotion", "pixels", "Usage")
SIDE = 48
KAGGLE_PAGE = (
    "https://www.kaggle.com/c/challenges-in-representation-learning-facial-expression-recognition-challenge/data"
)


@register_source("fer2013")
class FER2013Source:
    """The FER2013 CSV at ``path`` (e.g. ``fer2013.csv`` from the Kaggle challenge page)."""

    def __init__(self, *, path: str) -> None:
        self.path = ResolvedPath.resolve("source.path", path)

    def load(self) -> LoadedData:
        where = self.path.describe()
        if not self.path.path.is_file():
            raise DataNotFoundError(
                f"FER2013 CSV not found: {where}. Download fer2013.csv from {literal(KAGGLE_PAGE)} "
                "and put it there, or point $source.path at it"
            )
        try:
            with open(self.path.path, newline="", encoding="utf-8") as handle:
                images, labels, problems = _read_rows(csv.reader(handle), where)
        except UnicodeDecodeError as error:
            raise DataFormatError(f"{where}: not a text CSV file ({literal(error)})") from error
        if problems:
            raise DataFormatError(
                f"{where}: " + listing(problems, "malformed rows (line numbers count the header as line 1)")
            )
        splits = {}
        for usage, split in USAGE_SPLITS.items():
            if not images[split]:
                raise DataFormatError(
                    f"{where}: no rows with Usage {literal(repr(usage))}, so the {split} split would be empty"
                )
            splits[split] = Split(
                images=torch.from_numpy(np.stack(images[split]).reshape(-1, 1, SIDE, SIDE)),
                labels=torch.tensor(labels[split], dtype=torch.int64),
            )
        return LoadedData(**splits, task=MULTICLASS, label_names=list(EMOTIONS))


def _read_rows(reader, where: str) -> tuple[dict[str, list[np.ndarray]], dict[str, list[int]], list[str]]:
    header = next(reader, None)
    names = [name.strip() for name in header or []]
    if sorted(names) != sorted(COLUMNS):
        raise DataFormatError(
            f"{where}: the header is {literal(repr(','.join(header or [])))}; expected the columns "
            f"{literal(repr(','.join(COLUMNS)))} of the FER2013 CSV from {literal(KAGGLE_PAGE)}"
        )
    column = {name: names.index(name) for name in COLUMNS}
    images: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    labels: dict[str, list[int]] = {split: [] for split in SPLITS}
    problems = []
    for row in reader:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank lines, e.g. a trailing newline
        if len(row) != len(COLUMNS):
            problems.append(f"line {reader.line_num}: {len(row)} fields, expected {len(COLUMNS)} ({','.join(names)})")
            continue
        emotion, emotion_problem = _parse_emotion(row[column["emotion"]])
        pixels, pixel_problem = _parse_pixels(row[column["pixels"]])
        usage = row[column["Usage"]].strip()
        usage_problem = None if usage in USAGE_SPLITS else f"Usage {usage!r} is not one of {', '.join(USAGE_SPLITS)}"
        row_problems = [problem for problem in (emotion_problem, pixel_problem, usage_problem) if problem]
        if row_problems:
            problems.append(f"line {reader.line_num}: " + "; ".join(row_problems))
            continue
        images[USAGE_SPLITS[usage]].append(pixels)
        labels[USAGE_SPLITS[usage]].append(emotion)
    return images, labels, problems


def _parse_emotion(text: str) -> tuple[int, str | None]:
    try:
        emotion = int(text)
    except ValueError:
        return -1, f"emotion {text!r} is not an integer"
    if not 0 <= emotion < len(EMOTIONS):
        return -1, f"emotion {emotion} is outside 0..{len(EMOTIONS) - 1}"
    return emotion, None


def _parse_pixels(text: str) -> tuple[np.ndarray, str | None]:
    """2304 grey values 0..255 as uint8, parsed in C (``np.fromstring``), not value by value."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)  # older NumPy only warns on bad text
            values = np.fromstring(text, dtype=np.int64, sep=" ")
    except (ValueError, DeprecationWarning):
        bad = next((token for token in text.split() if not _is_integer(token)), text)
        return np.empty(0, np.uint8), f"pixel value {bad!r} is not an integer"
    if values.size != SIDE * SIDE:
        return np.empty(0, np.uint8), f"{values.size} pixel values, expected {SIDE * SIDE} ({SIDE} x {SIDE})"
    outside = values[(values < 0) | (values > 255)]
    if outside.size:
        return np.empty(0, np.uint8), f"pixel value {outside[0]} is outside 0..255"
    return values.astype(np.uint8), None


def _is_integer(token: str) -> bool:
    try:
        int(token)
    except ValueError:
        return False
    return True
