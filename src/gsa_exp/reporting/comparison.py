"""global vs none for one backbone x data set x metric: pair the runs by seed, then test.

Over seeds and over test images, and why both: docs/statistics.md. Every input that is
missing or unusable becomes a note: nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gsa_exp.reporting import statistics as st
from gsa_exp.reporting.predictions import (
    PREDICTIONS_FILE,
    TARGETS_FILE,
    NoPerImageFiles,
    PerImage,
    PerImageError,
    read_per_image,
)

# Logged metric -> the statistic re-computed from per-image files.
STAT_METRICS = {"test/acc": st.ACCURACY, "test/auroc": st.AUROC}
NONE, GLOBAL = "none", "global"


@dataclass(frozen=True)
class Options:
    """How the tests run; the defaults are what results.md states."""

    resamples: int = 2000  # bootstrap resamples over test images
    seed: int = 0  # of the bootstrap's random generator: the same sweep gives the same numbers
    confidence: float = 0.95
    alpha: float = 0.05  # "significant" means p < alpha (no correction for multiple comparisons)

    def __post_init__(self) -> None:
        if self.resamples < 1:
            raise ValueError(f"resamples must be >= 1, got {self.resamples}")
        if not 0 < self.confidence < 1 or not 0 < self.alpha < 1:
            raise ValueError("confidence and alpha must lie strictly between 0 and 1")


@dataclass(frozen=True)
class Run:
    """One job of a side: its logged value, or why it has none."""

    name: str
    path: Path
    seed: Any
    value: float | None  # None: failed, unfinished, or the metric is missing / not finite
    problem: str = ""  # why value is None


@dataclass(frozen=True)
class Question:
    """One backbone row x data set x metric, with every job of its none and global cells."""

    dataset: str
    row: tuple[str, ...]  # (scheme, resolution, backbone, variant, setting), as reporting.jobs.Row
    row_label: str
    metric: str
    none: tuple[Run, ...]
    global_: tuple[Run, ...]


@dataclass
class SeedResult:
    """One none/global pair (same seed)."""

    seed: Any
    none_job: str
    global_job: str
    logged_delta: float  # value(global) − value(none) as logged
    images: st.Estimate | None = None  # bootstrap over this pair's test images
    delong: st.DeLong | None = None  # binary AUROC only
    n_images: int | None = None


@dataclass
class Comparison:
    """Everything results.md/.csv say about one Question."""

    question: Question
    pairs: list[SeedResult]
    over_seeds: st.PairedT
    images: st.Estimate | None = None  # bootstrap of the mean Δ over the pooled seed pairs
    image_seeds: list[Any] = field(default_factory=list)  # the seeds pooled in ``images``
    n_images: int | None = None
    resamples: int | None = None
    delong: st.DeLong | None = None  # mean AUC difference over the pooled pairs (binary only)
    task: str | None = None
    notes: list[str] = field(default_factory=list)


def _seed_key(seed: Any) -> tuple[int, Any]:
    try:
        return (0, float(seed))
    except (TypeError, ValueError):
        return (1, str(seed))


def _describe(runs: Sequence[Run]) -> str:
    return ", ".join(f"{run.problem or 'no value'} ({run.name})" for run in runs)


def pair_by_seed(question: Question) -> tuple[list[tuple[Any, Run, Run]], list[str]]:
    """(seed, none run, global run) for every seed with exactly one usable run per side; notes for the rest."""
    notes: list[str] = []
    sides: dict[str, dict[str, list[Run]]] = {NONE: {}, GLOBAL: {}}
    unusable: dict[str, dict[str, list[Run]]] = {NONE: {}, GLOBAL: {}}
    for name, runs in ((NONE, question.none), (GLOBAL, question.global_)):
        for run in runs:
            if run.seed is None:
                notes.append(f"{name} job {run.name} has no seed in its config: not paired")
                continue
            target = sides if run.value is not None else unusable
            target[name].setdefault(str(run.seed), []).append(run)
    seeds = sorted(set().union(*sides.values(), *unusable.values()), key=_seed_key)
    pairs = []
    for seed in seeds:
        found = {name: sides[name].get(seed, []) for name in sides}
        if all(len(runs) == 1 for runs in found.values()):
            pairs.append((found[NONE][0].seed, found[NONE][0], found[GLOBAL][0]))
            continue
        reasons = []
        for name, runs in found.items():
            if len(runs) > 1:
                reasons.append(f"{len(runs)} {name} jobs ({', '.join(run.name for run in runs)}): ambiguous")
            elif not runs:
                bad = unusable[name].get(seed, [])
                reasons.append(f"{name} {_describe(bad)}" if bad else f"no {name} job")
        notes.append(f"seed {seed} not paired: {'; '.join(reasons)}")
    return pairs, notes


Reader = Callable[[Path], PerImage]


def cached_reader(split: str = "test") -> Reader:
    """read_per_image with memory: accuracy and AUROC read the same files."""
    seen: dict[Path, PerImage | PerImageError] = {}

    def read(path: Path) -> PerImage:
        if path not in seen:
            try:
                seen[path] = read_per_image(path, split)
            except PerImageError as exc:
                seen[path] = exc
        found = seen[path]
        if isinstance(found, PerImageError):
            raise found
        return found

    return read


Usable = tuple[SeedResult, "PerImage | None", "PerImage | None", str]  # (pair, none files, global files, task)


def _usable_pairs(pairs: list[tuple[Any, Run, Run]], read: Reader, notes: list[str]) -> list[Usable]:
    """Every seed pair, with its per-image arrays when they exist, describe the same images and fit a task."""
    usable: list[Usable] = []
    skipped: list[str] = []
    files_anywhere = False
    for seed, none_run, global_run in pairs:
        result = SeedResult(seed, none_run.name, global_run.name, global_run.value - none_run.value)
        usable.append((result, None, None, ""))
        problems, arrays = [], []
        for run in (none_run, global_run):
            try:
                arrays.append(read(run.path))
            except PerImageError as exc:
                problems.append(f"{run.name}: {exc}")
                files_anywhere |= not isinstance(exc, NoPerImageFiles)
        files_anywhere |= bool(arrays)
        if problems:
            skipped.append(f"seed {seed} not re-scored over test images: {'; '.join(problems)}")
            continue
        a, b = arrays
        if not np.array_equal(a.targets, b.targets):
            reason = f"the targets files of {none_run.name} and {global_run.name} differ (not the same test images)"
        elif a.scores.shape != b.scores.shape:
            reason = (
                f"score columns differ ({a.scores.shape[1]} in {none_run.name}, "
                f"{b.scores.shape[1]} in {global_run.name})"
            )
        else:
            try:
                usable[-1] = (result, a, b, st.infer_task(a.scores, a.targets))
                continue
            except ValueError as exc:
                reason = str(exc)
        skipped.append(f"seed {seed} not re-scored over test images: {reason}")
    if pairs and not files_anywhere:
        names = f"{PREDICTIONS_FILE.format(split='test')}, {TARGETS_FILE.format(split='test')}"
        notes.append(f"no per-image files ({names}) in these jobs: nothing re-scored over test images")
    else:
        notes.extend(skipped)
    return usable


def _test_images(comparison: Comparison, usable: list[Usable], options: Options) -> None:
    """Bootstrap (and DeLong) per group of seed pairs sharing one test set; the largest group is pooled."""
    groups: list[list] = []
    for item in usable:
        if item[1] is None:
            continue
        for group in groups:
            if np.array_equal(group[0][1].targets, item[1].targets):
                group.append(item)
                break
        else:
            groups.append([item])
    if not groups:
        return
    metric = STAT_METRICS[comparison.question.metric]
    for number, group in enumerate(sorted(groups, key=len, reverse=True)):
        results = [item[0] for item in group]
        targets, task = group[0][1].targets, group[0][3]
        boot = st.paired_bootstrap(
            metric,
            targets,
            [item[1].scores for item in group],
            [item[2].scores for item in group],
            options.resamples,
            options.seed,
            options.confidence,
            task,
        )
        for result, estimate in zip(results, boot.pairs):
            result.images, result.n_images = estimate, boot.n_images
        pooled_delong = None
        if metric == st.AUROC and task == st.BINARY:
            positive = targets[:, 0] == 1
            none_scores = [st.binary_scores(item[1].scores) for item in group]
            global_scores = [st.binary_scores(item[2].scores) for item in group]
            try:
                for result, a, b in zip(results, none_scores, global_scores):
                    result.delong = st.delong_test(positive, a, b)
                pooled_delong = st.delong_mean_difference(positive, none_scores, global_scores)
            except ValueError as exc:
                comparison.notes.append(f"DeLong not done: {exc}")
        if number == 0:
            comparison.images, comparison.delong = boot.mean, pooled_delong
            comparison.image_seeds = [result.seed for result in results]
            comparison.n_images, comparison.resamples, comparison.task = boot.n_images, boot.resamples, task
        else:
            seeds = ", ".join(str(result.seed) for result in results)
            comparison.notes.append(
                f"seed(s) {seeds} were tested on other test images than seed(s) "
                f"{', '.join(map(str, comparison.image_seeds))}: per seed only, not pooled"
            )
    if metric == st.AUROC and comparison.task and comparison.task != st.BINARY:
        comparison.notes.append(
            f"DeLong not done: it compares two ROC curves of a binary task, this one is {comparison.task}"
        )


def compare(question: Question, options: Options = Options(), read: Reader | None = None) -> Comparison:
    """Pair by seed, test over seeds, and over test images where the per-image files allow (a metric of STAT_METRICS)."""
    pairs, notes = pair_by_seed(question)
    differences = [global_run.value - none_run.value for _seed, none_run, global_run in pairs]
    comparison = Comparison(question, [], st.paired_t(differences, options.confidence), notes=notes)
    usable = _usable_pairs(pairs, read or cached_reader(), comparison.notes)
    comparison.pairs = [item[0] for item in usable]
    _test_images(comparison, usable, options)
    return comparison
