"""A run's per-image outputs (``predictions_<split>.csv``, ``targets_<split>.csv``) as arrays.

The files let two runs be compared image by image after the fact, without the data set
(their layout: docs/statistics.md).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gsa_exp.run_files import PREDICTIONS_FILE, TARGETS_FILE


class PerImageError(ValueError):
    """A job's per-image files are missing or do not fit together (the message says which and why)."""


class NoPerImageFiles(PerImageError):
    """Neither file exists: the run predates them or did not write them (several processes)."""


@dataclass(frozen=True)
class PerImage:
    """Scores (images x columns) and integer targets (images x 1, or images x labels)."""

    index: np.ndarray
    scores: np.ndarray
    targets: np.ndarray


def _table(path: Path) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy warns on an empty file: reported below instead
            rows = np.loadtxt(path, delimiter=",", ndmin=2, dtype=float)
    except (OSError, ValueError) as exc:
        raise PerImageError(f"{path.name} unreadable: {exc}") from exc
    if rows.size == 0:
        raise PerImageError(f"{path.name} is empty")
    if rows.shape[1] < 2:
        raise PerImageError(f"{path.name} has no column after the index")
    return rows


def read_per_image(job_dir: str | Path, split: str = "test") -> PerImage:
    """The split's scores and targets of one job directory; PerImageError when they are unusable."""
    job_dir = Path(job_dir)
    paths = [job_dir / PREDICTIONS_FILE.format(split=split), job_dir / TARGETS_FILE.format(split=split)]
    missing = [path.name for path in paths if not path.is_file()]
    if len(missing) == len(paths):
        raise NoPerImageFiles(f"{' and '.join(missing)} missing")
    if missing:
        raise PerImageError(f"{' and '.join(missing)} missing")
    predictions, targets = (_table(path) for path in paths)
    if len(predictions) != len(targets) or not np.array_equal(predictions[:, 0], targets[:, 0]):
        raise PerImageError(f"{paths[0].name} and {paths[1].name} list different images")
    scores = predictions[:, 1:]
    if not np.isfinite(scores).all():
        raise PerImageError(f"{paths[0].name} holds non-finite scores")
    labels = targets[:, 1:]
    if not np.array_equal(labels, np.round(labels)):
        raise PerImageError(f"{paths[1].name} holds non-integer labels")
    return PerImage(predictions[:, 0].astype(np.int64), scores, labels.astype(np.int64))
