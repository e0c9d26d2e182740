"""Building the sweep's tables: one per metric, a cell (mean ± std over seeds) per data set x row x attention.

The global vs none statistics of each row are computed here too (by ``comparison``), so
that every output file renders the same ``Summary``.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gsa_exp.options.scheme import SCHEMES
from gsa_exp.reporting.comparison import STAT_METRICS, Comparison, Options, Question, Run, cached_reader, compare
from gsa_exp.reporting.jobs import FAILED, FINISHED, KILLED, UNFINISHED, Job, Row, Sweep
from gsa_exp.run_files import METRICS_FILE

DEFAULT_METRICS = ("test/acc", "test/auroc")
OPTIONAL_METRICS = ("test/map_auroc",)
DELTA_PAIR = ("global", "none")  # Δ = mean(global) − mean(none)


@dataclass(frozen=True)
class Cell:
    """The values of one metric for one (data set, row, attention)."""

    values: tuple[float, ...]
    n_failed: int
    n_unfinished: int

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def n_jobs(self) -> int:
        return self.n + self.n_failed + self.n_unfinished

    # Not pandas: 5 of the 82 mean/std of tests/fabricated_sweeps.py would change (by ≤ 2.2e-16) in results.csv.
    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if self.n >= 2 else None

    def text(self) -> str:
        """``0.912 ± 0.004 (n=3)``, ``0.912 (n=1)``, ``— (n=0, 2 failed)``."""
        counts = [f"n={self.n}"]
        if self.n_failed:
            counts.append(f"{self.n_failed} failed")
        if self.n_unfinished:
            counts.append(f"{self.n_unfinished} unfinished")
        if self.mean is None:
            value = "—"
        elif self.std is None:
            value = f"{self.mean:.3f}"
        else:
            value = f"{self.mean:.3f} ± {self.std:.3f}"
        return f"{value} ({', '.join(counts)})"


@dataclass
class Table:
    """One metric: its columns (data set, attention) and its cells keyed by (data set, row, attention)."""

    metric: str
    columns: list[tuple[str, str]]
    cells: dict[tuple[str, Row, str], Cell]

    def delta(self, dataset: str, row: Row) -> float | None:
        """mean(global) − mean(none) for one data set and row; None when either is missing."""
        means = [self.cells.get((dataset, row, attention)) for attention in DELTA_PAIR]
        if any(cell is None or cell.mean is None for cell in means):
            return None
        return means[0].mean - means[1].mean

    def has_delta(self, dataset: str) -> bool:
        return all((dataset, attention) in self.columns for attention in DELTA_PAIR)


@dataclass
class Summary:
    """Everything the three output files show."""

    sweep: Sweep
    metrics: tuple[str, ...]  # the requested metrics (every column; plotted)
    tables: list[Table]  # requested metrics first, then the optional ones some job logged
    datasets: list[str]
    rows: list[Row]  # (scheme, resolution, backbone, variant, setting), in display order
    row_labels: dict[Row, str]
    problems: list[tuple[Job, str, str]]  # (job, state, reason) for every job not fully usable
    notes: list[str]
    comparisons: list[Comparison] = field(default_factory=list)  # global vs none, per row x data set x metric
    options: Options = field(default_factory=Options)
    references: bool = False  # show MedMNIST v2's published numbers beside the sweep's


def backbone_order() -> tuple[str, ...]:
    """Rows follow the backbone registry's order (the paper's four first); imported here, as it loads torch."""
    from gsa_exp.backbones import list_backbones

    return list_backbones()


def attention_order() -> tuple[str, ...]:
    """Columns follow the attention registry's order (none, then global); imported here, as it loads torch."""
    from gsa_exp.attention import attention_order

    return attention_order()


def _order_key(name: str, order: Sequence[str]) -> tuple[int, str]:
    return (order.index(name), "") if name in order else (len(order), name)


def _natural_key(text: str) -> list[Any]:
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text)]


def _row_key(row: Row) -> tuple[Any, ...]:
    """Scheme (end_to_end, linear_probe, knn), resolution, then backbone in the registry's order."""
    scheme, resolution, backbone, variant, setting = row
    return (
        _order_key(scheme, SCHEMES),
        _natural_key(resolution),
        *_order_key(backbone, backbone_order()),
        variant,
        _natural_key(setting),
    )


def _row_label(row: Row, variants: Counter) -> str:
    """``resnet``, ``resnet (resnet50)`` where a backbone has several variants, ``resnet [knn, 64 px]``,
    ``... [trainer.max_epochs=2]``."""
    scheme, resolution, backbone, variant, setting = row
    group = ", ".join(part for part in (scheme, resolution) if part)
    label = backbone + (f" ({variant})" if variants[backbone] > 1 and variant else "")
    return label + "".join(f" [{part}]" for part in (group, setting) if part)


def _metric_value(job: Job, metric: str) -> tuple[float | None, str]:
    """(value, problem) of a finished job for one metric; problem is '' when the value is usable."""
    value = (job.metrics or {}).get(metric)
    if value is None:
        return None, f"{metric} missing from {METRICS_FILE}"
    if not math.isfinite(value):
        return None, f"{metric} is {value}"
    return value, ""


def _build_table(
    metric: str, jobs: Sequence[Job], columns: list[tuple[str, str]]
) -> tuple[Table, dict[str, list[str]]]:
    """The metric's cells over the given columns, and {job name: problems} of finished jobs without a value."""
    grouped: dict[tuple[str, Row, str], list[Job]] = {}
    for job in jobs:
        if (job.dataset, job.attention) in columns:
            grouped.setdefault((job.dataset, job.row, job.attention), []).append(job)
    cells, problems = {}, {}
    for key, members in grouped.items():
        values, failed, unfinished = [], 0, 0
        for job in members:
            if job.state in (UNFINISHED, KILLED):  # a killed job resumes when relaunched: not a failure
                unfinished += 1
            elif job.state == FAILED:
                failed += 1
            else:
                value, problem = _metric_value(job, metric)
                if problem:
                    failed += 1
                    problems.setdefault(job.name, []).append(problem)
                else:
                    values.append(value)
        cells[key] = Cell(tuple(values), failed, unfinished)
    return Table(metric, columns, cells), problems


def _run(job: Job, metric: str) -> Run:
    value, problem = _metric_value(job, metric) if job.state == FINISHED else (None, job.state)
    return Run(job.name, job.path, job.seed, value, problem)


def _comparisons(
    tables: Sequence[Table],
    jobs: Sequence[Job],
    datasets: Sequence[str],
    rows: Sequence[Row],
    row_labels: dict[Row, str],
    options: Options,
) -> list[Comparison]:
    """global vs none for every row x data set x statistics metric whose two cells have jobs."""
    read, found = cached_reader(), []
    chosen = [table for table in tables if table.metric in STAT_METRICS]
    for dataset in datasets:
        for row in rows:
            for table in chosen:
                if not all((dataset, row, attention) in table.cells for attention in DELTA_PAIR):
                    continue
                sides = [
                    tuple(
                        _run(job, table.metric)
                        for job in jobs
                        if (job.dataset, job.row, job.attention) == (dataset, row, attention)
                    )
                    for attention in ("none", "global")
                ]
                found.append(compare(Question(dataset, row, row_labels[row], table.metric, *sides), options, read))
    return found


def summarize(
    sweep: Sweep, metrics: Sequence[str] = DEFAULT_METRICS, options: Options | None = None, references: bool = False
) -> Summary:
    """Group the sweep's jobs into tables (requested metrics, then optional ones some job logged); test global vs none."""
    metrics = tuple(dict.fromkeys(metrics))
    if not metrics:
        raise ValueError("no metrics to summarise")
    placed = [job for job in sweep.jobs if job.dataset is not None]
    datasets = sorted({job.dataset for job in placed})
    attentions = sorted({job.attention for job in placed}, key=lambda name: _order_key(name, attention_order()))
    present = {(job.dataset, job.attention) for job in placed}
    all_columns = [(d, a) for d in datasets for a in attentions if (d, a) in present]
    notes = list(sweep.notes)
    finished = [job for job in placed if job.state == FINISHED]

    tables, problems_by_job = [], {}
    for metric in metrics + tuple(m for m in OPTIONAL_METRICS if m not in metrics):
        having = {(job.dataset, job.attention) for job in finished if metric in (job.metrics or {})}
        if metric in OPTIONAL_METRICS:  # logged by some attention variants only: their columns
            columns = [column for column in all_columns if column in having]
            if not columns:
                continue
        else:
            columns = all_columns
            if finished and not having:
                logged = sorted({key for job in finished for key in job.metrics or {}})
                notes.append(f"no finished job logged {metric!r}; logged metrics: {', '.join(logged)}")
        table, problems = _build_table(metric, placed, columns)
        tables.append(table)
        for name, items in problems.items():
            problems_by_job.setdefault(name, []).extend(items)

    rows = sorted({job.row for job in placed}, key=_row_key)
    variants = Counter(backbone for backbone, _variant in {(r[2], r[3]) for r in rows})
    row_labels = {row: _row_label(row, variants) for row in rows}
    problems = []
    for job in sweep.jobs:
        if job.state != FINISHED:
            problems.append((job, job.state, job.reason))
        elif job.name in problems_by_job:
            problems.append((job, "finished, unusable metric", "; ".join(problems_by_job[job.name])))
    options = options or Options()
    requested = [table for table in tables if table.metric in metrics]
    comparisons = _comparisons(requested, placed, datasets, rows, row_labels, options)
    return Summary(
        sweep, metrics, tables, datasets, rows, row_labels, problems, notes, comparisons, options, references
    )
