"""Summarise a Hydra sweep (``outputs/multirun/<date>/<time>``) as tables and a bar chart.

Every job directory of the sweep (a sub-directory holding ``.hydra/``) is read: its
composed config (``.hydra/config.yaml``: ``dataset.name``, ``backbone.name``,
``backbone.variant``, ``attention.name``, ``seed``), its override list
(``.hydra/overrides.yaml``) and, when it finished, its ``metrics.json``. No job is ever
dropped silently: a job counts in its cell as finished, failed or unfinished, and every job
that did not give a usable value is listed with the reason.

Grouping
    Rows are backbones (googlenet, vgg, resnet, densenet, then the others alphabetically).
    When one backbone appears with several ``backbone.variant`` values, each variant gets its
    own row (``resnet (resnet50)``). When the sweep varies an override other than the data
    set, backbone, attention and seed (``trainer.max_epochs=2,10``), that setting is added to
    the row label (``resnet [trainer.max_epochs=10]``), so runs that differ in more than the
    seed are never pooled. Columns are data set x attention (none, global, local, static,
    then the others alphabetically), followed per data set by Δ(global − none) when both
    columns exist.

Cells
    ``mean ± std (n=N)`` over the finished jobs of the cell (in practice, the seeds), with the
    sample standard deviation (ddof=1), 3 decimals. With n=1 the standard deviation is not
    defined: the cell shows the mean alone, ``0.912 (n=1)``; with n=0 it shows ``—``. Jobs of
    the cell without a usable value are counted after n: ``(n=2, 1 failed, 1 unfinished)``.
    Δ(global − none) is the difference of the two means, signed (``+0.020``).

Job states
    * finished: ``metrics.json`` exists and parses. A finished job whose value of a metric is
      missing or not finite (NaN, inf) counts as *failed* in that metric's cells.
    * failed: no ``metrics.json`` and a failure signal: ``error.txt`` in the job directory, a
      ``status.json`` whose ``status`` is not running/completed (or says completed without
      metrics), or a ``failed`` line for the job in the sweep's optional
      ``sweep_status.jsonl``. The reason is the first non-empty line of the error (for a
      Python traceback, its last line: the exception). An unreadable ``metrics.json`` or
      ``.hydra/config.yaml`` is a failure too. A readable ``metrics.json`` wins over the
      status files: such a job counts as finished.
    * unfinished: no ``metrics.json`` and no failure signal (still running, or killed).
    * not started: when ``multirun.yaml`` describes a basic-sweeper grid, the override
      combinations that have no job directory yet are counted and listed.

Metric tables
    One per requested metric (default ``test/acc`` and ``test/auroc``; every column is shown),
    then the optional metrics that some job logged (``test/map_auroc``: the attention map
    scored against the synthetic data set's ground-truth region). An optional metric, requested
    or not, only gets the columns (data set x attention) in which a finished job logged it.

Files (written into the sweep directory, or ``out_dir``)
    ``results.md``
        A header with the job counts, one table per metric, notes, and the section
        "Failed or unfinished jobs" (job directory, cell, state, reason).
    ``results.csv``
        Long ("tidy") format, one row per (dataset, backbone, variant, setting, attention,
        metric) that has jobs, plus one delta row per (dataset, backbone, variant, setting,
        metric) where both global and none have jobs. Columns:

        ============ =========================================================================
        dataset      ``dataset.name``
        backbone     ``backbone.name``
        attention    ``attention.name``; ``delta(global-none)`` on delta rows
        metric       the metric key as logged (``test/acc``)
        mean         mean over the finished jobs; on delta rows mean(global) − mean(none);
                     empty when there is none
        std          sample standard deviation (ddof=1); empty when n < 2 and on delta rows
        n            jobs with a finite value (empty on delta rows)
        n_failed     jobs of the cell that failed or gave no finite value for this metric
        n_unfinished jobs of the cell without metrics.json and without a failure signal
        n_jobs       job directories in the cell (n + n_failed + n_unfinished)
        variant      ``backbone.variant`` (empty when the config has none)
        setting      the sweep's other varying overrides for these jobs (usually empty)
        ============ =========================================================================

        Then the statistics of global vs none (``comparison_report.CSV_COLUMNS``), filled on
        the delta rows of ``test/acc`` and ``test/auroc`` (empty ``seed``), and on one more
        delta row per seed pair re-scored over test images (``seed`` set; ``mean`` = that
        seed's logged Δ):

        ============== =======================================================================
        seed           the seed of a per-seed delta row (empty on the cell's delta row)
        n_pairs        seed pairs (none and global jobs with the same seed, both finite)
        paired_delta   mean of the paired differences (equals ``mean`` when every job paired)
        paired_ci_low  95 % t interval of paired_delta (empty with fewer than 2 pairs)
        paired_ci_high
        paired_p       two-sided paired t-test p-value (empty with fewer than 2 pairs)
        image_delta    Δ re-computed from the per-image files (cell row: mean over image_seeds)
        image_ci_low   bootstrap percentile interval over test images
        image_ci_high
        image_p        two-sided bootstrap p-value over test images
        image_seeds    the seeds re-scored (``;``-separated)
        n_images       test images
        resamples      bootstrap resamples
        delong_p       DeLong's test of the AUROC difference (binary tasks, test/auroc only)
        stat_note      why a statistic is missing (unpaired seeds, missing or differing files)
        ============== =======================================================================

        Numbers are written at full precision; empty fields read as NaN in pandas.
    ``results.tex``
        The metric tables of the requested metrics as a booktabs LaTeX table (``latex``):
        rows backbones, columns data set x attention, mean ± std, the best mean per data set
        and metric in bold.
    ``results.png``
        Grouped bars, one panel per data set (columns) and per requested metric (rows), one
        group per backbone row, one bar per attention, error bars = std (none when n < 2),
        the y axis from 0, each bar labelled with its mean while a panel has at most 16 bars.

Statistics: global vs none
    A section of results.md, one row per backbone x data set x metric (``test/acc``,
    ``test/auroc``, when requested) that has both none and global jobs: Δ paired over seeds
    (t interval, paired t-test), Δ over test images from the jobs' ``predictions_test.csv``
    and ``targets_test.csv`` (paired bootstrap; DeLong for binary AUROC), and a sentence
    saying whether each difference is significant at 0.05. What is computed and how:
    ``comparison`` and ``statistics``; what is missing is listed under the table.

References
    With ``references=True`` (``summarize.py --references``; off by default), the tables of
    results.md get a column per data set with MedMNIST v2's published ResNet-18 (28) test
    ACC/AUC, and results.tex a row (``references``), for the data sets that have one.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from gsa_exp.reporting import comparison_report, latex
from gsa_exp.reporting import references as refs
from gsa_exp.reporting.comparison import STAT_METRICS, Comparison, Options, Question, Run, cached_reader, compare
from gsa_exp.run_files import ERROR_FILE, METRICS_FILE, STATUS_FILE, SWEEP_STATUS_FILE

DEFAULT_METRICS = ("test/acc", "test/auroc")
OPTIONAL_METRICS = ("test/map_auroc",)
BACKBONE_ORDER = ("googlenet", "vgg", "resnet", "densenet")
ATTENTION_ORDER = ("none", "global", "local", "static")
DELTA_PAIR = ("global", "none")  # Δ = mean(global) − mean(none)
DELTA_ATTENTION = "delta(global-none)"  # the attention value of delta rows in results.csv
DELTA_HEADER = "Δ(global − none)"
CSV_COLUMNS = (
    "dataset",
    "backbone",
    "attention",
    "metric",
    "mean",
    "std",
    "n",
    "n_failed",
    "n_unfinished",
    "n_jobs",
    "variant",
    "setting",
    *comparison_report.CSV_COLUMNS,
)
RESULT_FILES = {"markdown": "results.md", "csv": "results.csv", "plot": "results.png", "latex": "results.tex"}

FINISHED, FAILED, UNFINISHED = "finished", "failed", "unfinished"
CONFIG_FILE = Path(".hydra") / "config.yaml"
OVERRIDES_FILE = Path(".hydra") / "overrides.yaml"
MULTIRUN_FILE = "multirun.yaml"
# Override keys already represented by the grid (or pooled on purpose: the seed).
GRID_KEYS = frozenset({"dataset", "backbone", "attention", "backbone.variant", "seed"})
NOT_FAILED_STATUSES = frozenset({"completed", "finished", "success", "succeeded", "ok", "done"})
RUNNING_STATUSES = frozenset({"running", "started", "pending", "queued", "submitted"})
MAX_REASON = 200


class SweepError(Exception):
    """The directory is not a readable sweep (missing, or without job directories)."""


@dataclass
class Job:
    """One job directory of a sweep and what it left behind."""

    name: str
    path: Path
    dataset: str | None  # None when the config could not be read: the job has no cell
    backbone: str | None
    variant: str | None
    attention: str | None
    seed: Any
    overrides: tuple[str, ...]
    metrics: dict[str, float] | None
    state: str  # finished | failed | unfinished
    reason: str = ""  # why the job is failed or unfinished
    setting: str = ""  # the sweep's varying overrides beyond the grid keys (set by load_sweep)

    @property
    def row(self) -> tuple[str, str, str]:
        return (self.backbone or "?", self.variant or "", self.setting)

    @property
    def cell_label(self) -> str:
        if self.dataset is None:
            return "unknown (config unreadable)"
        backbone = self.backbone + (f" ({self.variant})" if self.variant else "")
        setting = f" [{self.setting}]" if self.setting else ""
        return f"{self.dataset} / {backbone}{setting} / {self.attention}"


@dataclass
class Sweep:
    """The jobs of a sweep directory, plus what its multirun.yaml / sweep_status.jsonl tell."""

    path: Path
    jobs: list[Job]
    expected: int | None = None  # jobs the grid in multirun.yaml describes (None: unknown)
    not_started: list[str] = field(default_factory=list)  # override combinations without a directory
    notes: list[str] = field(default_factory=list)


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
    cells: dict[tuple[str, tuple[str, str, str], str], Cell]

    def delta(self, dataset: str, row: tuple[str, str, str]) -> float | None:
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
    rows: list[tuple[str, str, str]]  # (backbone, variant, setting), in display order
    row_labels: dict[tuple[str, str, str], str]
    problems: list[tuple[Job, str, str]]  # (job, state, reason) for every job not fully usable
    notes: list[str]
    comparisons: list[Comparison] = field(default_factory=list)  # global vs none, per row x data set x metric
    options: Options = field(default_factory=Options)
    references: bool = False  # show MedMNIST v2's published numbers beside the sweep's


# ----------------------------------------------------------------------------- reading


def _order_key(name: str, order: Sequence[str]) -> tuple[int, str]:
    return (order.index(name), "") if name in order else (len(order), name)


def _natural_key(text: str) -> list[Any]:
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text)]


def _job_number(name: str) -> tuple[int, str]:
    match = re.match(r"(?:job)?(\d+)", name)
    return (int(match.group(1)) if match else 1 << 30, name)


def _shorten(text: str, limit: int = MAX_REASON) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_line(text: str) -> str:
    """The line that says what went wrong: the first non-empty one, or a traceback's last one."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    return _shorten(lines[-1] if lines[0].startswith("Traceback") else lines[0])


def _select(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _read_metrics(path: Path) -> dict[str, float]:
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise ValueError(f"expected a JSON object, got {type(raw).__name__}")
    metrics = {}
    for key, value in raw.items():
        try:
            metrics[str(key)] = float(value)
        except (TypeError, ValueError):
            metrics[str(key)] = float("nan")
    return metrics


def _failure_reason(path: Path, sweep_status: dict[str, dict]) -> tuple[str, str]:
    """(state, reason) of a job directory without metrics.json."""
    error = error_line((path / ERROR_FILE).read_text(errors="replace")) if (path / ERROR_FILE).is_file() else None
    if (path / STATUS_FILE).is_file():
        try:
            status = _read_json(path / STATUS_FILE)
            status = status if isinstance(status, dict) else {"status": str(status)}
        except (OSError, ValueError) as exc:
            status = {"status": "unreadable", "error": f"status.json unreadable: {exc}"}
        word = str(status.get("status", "")).lower()
        message = next((status[k] for k in ("error", "message", "exception", "reason") if status.get(k)), "")
        detail = error or error_line(str(message))
        if word in NOT_FAILED_STATUSES:
            return FAILED, f"status {word!r} but no {METRICS_FILE}" + (f": {detail}" if detail else "")
        if word not in RUNNING_STATUSES or error:
            return FAILED, f"status {word or 'unknown'!r}" + (f": {detail}" if detail else "")
    if error is not None:
        return FAILED, f"{ERROR_FILE}: {error or '(empty)'}"
    record = sweep_status.get(path.name)
    if record is not None and str(record.get("status", "")).lower() not in NOT_FAILED_STATUSES | RUNNING_STATUSES:
        detail = error_line(str(record.get("error") or ""))
        return FAILED, f"{record.get('status')!r} in {SWEEP_STATUS_FILE}" + (f": {detail}" if detail else "")
    if record is not None and str(record.get("status", "")).lower() in NOT_FAILED_STATUSES:
        return FAILED, f"completed in {SWEEP_STATUS_FILE} but no {METRICS_FILE}"
    return UNFINISHED, f"no {METRICS_FILE} (still running, or stopped without a trace)"


def read_job(path: Path, sweep_status: dict[str, dict] | None = None) -> Job:
    """One job directory: its config, overrides and metrics, and whether it finished."""
    path = Path(path)
    overrides: tuple[str, ...] = ()
    if (path / OVERRIDES_FILE).is_file():
        try:
            overrides = tuple(str(item) for item in OmegaConf.load(path / OVERRIDES_FILE) or [])
        except Exception:  # a broken overrides file only loses the setting label
            overrides = ()
    try:
        cfg = OmegaConf.load(path / CONFIG_FILE)
        if not isinstance(cfg, DictConfig):
            raise ValueError("not a mapping")
    except Exception as exc:
        unknown = dict(dataset=None, backbone=None, variant=None, attention=None, seed=None, metrics=None)
        return Job(
            path.name,
            path,
            overrides=overrides,
            state=FAILED,
            reason=_shorten(f"{CONFIG_FILE} unreadable: {exc}"),
            **unknown,
        )
    attention = _select(cfg, "attention")
    fields = dict(
        dataset=str(_select(cfg, "dataset.name") or "unknown"),
        backbone=str(_select(cfg, "backbone.name") or "unknown"),
        variant=None if _select(cfg, "backbone.variant") is None else str(_select(cfg, "backbone.variant")),
        attention="none" if attention is None else str(_select(cfg, "attention.name") or "unknown"),
        seed=_select(cfg, "seed"),
        overrides=overrides,
    )
    if (path / METRICS_FILE).is_file():
        try:
            return Job(path.name, path, metrics=_read_metrics(path / METRICS_FILE), state=FINISHED, **fields)
        except (OSError, ValueError) as exc:
            return Job(
                path.name,
                path,
                metrics=None,
                state=FAILED,
                reason=_shorten(f"{METRICS_FILE} unreadable: {exc}"),
                **fields,
            )
    state, reason = _failure_reason(path, sweep_status or {})
    return Job(path.name, path, metrics=None, state=state, reason=reason, **fields)


def _read_sweep_status(path: Path, notes: list[str]) -> dict[str, dict]:
    """sweep_status.jsonl as {job directory name: last record}; bad lines become notes."""
    records: dict[str, dict] = {}
    if not path.is_file():
        return records
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            name = record.get("job") or Path(record["run_dir"]).name
        except (ValueError, KeyError, TypeError, AttributeError):
            notes.append(f"{SWEEP_STATUS_FILE} line {number} is not a job record; ignored")
            continue
        records[str(name)] = record
    return records


def expected_combinations(multirun_yaml: Path) -> list[tuple[str, ...]] | None:
    """The override lists a basic-sweeper grid in multirun.yaml launches; None when unknowable."""
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        cfg = OmegaConf.load(multirun_yaml)
        sweeper = _select(cfg, "hydra.sweeper._target_") or ""
        if not str(sweeper).endswith("BasicSweeper"):
            return None  # other sweepers (e.g. Optuna) decide their jobs as they go
        params = cfg.hydra.sweeper.get("params")
        params = OmegaConf.to_container(params, resolve=False) if params is not None else {}
        arguments = [f"{key}={value}" for key, value in params.items()]
        arguments += [str(item) for item in cfg.hydra.overrides.task]
        return grid_combinations(OverridesParser.create().parse_overrides(arguments))
    except Exception:
        return None


def grid_combinations(overrides: list[Any]) -> list[tuple[str, ...]]:
    """The override lists Hydra's basic sweeper launches for these parsed overrides, in its order.

    Each key keeps the place of its first mention and the value of its last; a discrete
    sweep (``a,b``, ``choice(a,b)``, ``range(...)``) contributes one entry per value, and the
    jobs are the product of the entries.
    """
    entries: dict[str, list[str]] = {}
    for override in overrides:
        key = override.get_key_element()
        if not override.is_sweep_override():
            entries[key] = [f"{key}={override.get_value_element_as_str()}"]
        elif override.is_discrete_sweep():
            entries[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            raise ValueError(f"{key}: the basic sweeper does not expand interval sweeps")
    return [tuple(combination) for combination in itertools.product(*entries.values())]


def _job_dirs(sweep_dir: Path) -> list[Path]:
    found = [child for child in sweep_dir.iterdir() if child.is_dir() and (child / ".hydra").is_dir()]
    return sorted(found, key=lambda child: _job_number(child.name))


def _varying_keys(jobs: Sequence[Job]) -> list[str]:
    """Override keys whose value is not the same in every job (grid keys and the seed aside)."""
    values: dict[str, set] = {}
    for job in jobs:
        mine = {_override_key(item): item for item in job.overrides}
        for key in set(values) | set(mine):
            values.setdefault(key, set()).add(mine.get(key))
    return sorted(key for key, seen in values.items() if len(seen) > 1 and key not in GRID_KEYS)


def load_sweep(sweep_dir: str | Path) -> Sweep:
    """Read every job directory of a sweep; raises SweepError when there is no sweep to read."""
    path = Path(sweep_dir)
    if not path.exists():
        raise SweepError(f"sweep directory {path} does not exist")
    if not path.is_dir():
        raise SweepError(f"{path} is not a directory")
    notes: list[str] = []
    sweep_status = _read_sweep_status(path / SWEEP_STATUS_FILE, notes)
    dirs = _job_dirs(path)
    if not dirs:
        hint = (
            f"{path} is a single run's directory, not a sweep"
            if (path / ".hydra").is_dir()
            else f"no job directories in {path}"
        )
        raise SweepError(
            f"{hint}: expected sub-directories such as 0_attention=none,backbone=resnet,seed=0, each with "
            f"{CONFIG_FILE}, as `python train.py -m ...` writes under outputs/multirun/<date>/<time>"
        )
    jobs = [read_job(job_dir, sweep_status) for job_dir in dirs]
    varying = _varying_keys(jobs)
    for job in jobs:
        mine = {_override_key(item): item for item in job.overrides}
        job.setting = ",".join(mine[key] for key in varying if key in mine)
    if varying:
        notes.append(f"the sweep also varies {', '.join(varying)}: each value gets its own row")
    names = {job.name for job in jobs}
    for name, record in sweep_status.items():
        if name not in names:
            notes.append(f"{SWEEP_STATUS_FILE} lists {name} ({record.get('status')}) but it has no job directory")
    sweep = Sweep(path, jobs, notes=notes)
    if (path / MULTIRUN_FILE).is_file():
        combinations = expected_combinations(path / MULTIRUN_FILE)
        if combinations is None:
            notes.append(f"the number of jobs {MULTIRUN_FILE} describes is unknown (not a basic-sweeper grid)")
        else:
            present = Counter(frozenset(job.overrides) for job in jobs)
            swept = {item for combination in combinations for item in combination}
            swept_keys = {_override_key(item) for item in swept}
            shown = {k for k in swept_keys if sum(_override_key(i) == k for i in swept) > 1} or swept_keys
            sweep.expected = len(combinations)
            for combination in combinations:
                if present[frozenset(combination)] > 0:
                    present[frozenset(combination)] -= 1
                else:
                    sweep.not_started.append(",".join(i for i in combination if _override_key(i) in shown))
    return sweep


# ----------------------------------------------------------------------------- tables


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
    grouped: dict[tuple[str, tuple[str, str, str], str], list[Job]] = {}
    for job in jobs:
        if (job.dataset, job.attention) in columns:
            grouped.setdefault((job.dataset, job.row, job.attention), []).append(job)
    cells, problems = {}, {}
    for key, members in grouped.items():
        values, failed, unfinished = [], 0, 0
        for job in members:
            if job.state == UNFINISHED:
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
    rows: Sequence[tuple[str, str, str]],
    row_labels: dict[tuple[str, str, str], str],
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
    """Group the sweep's jobs into tables: requested metrics, then optional metrics some job logged.

    Then global vs none is tested for the requested test/acc and test/auroc (``options``:
    bootstrap resamples and seed).
    """
    metrics = tuple(dict.fromkeys(metrics))
    if not metrics:
        raise ValueError("no metrics to summarise")
    placed = [job for job in sweep.jobs if job.dataset is not None]
    datasets = sorted({job.dataset for job in placed})
    attentions = sorted({job.attention for job in placed}, key=lambda name: _order_key(name, ATTENTION_ORDER))
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

    rows = sorted(
        {job.row for job in placed},
        key=lambda row: (*_order_key(row[0], BACKBONE_ORDER), row[1], _natural_key(row[2])),
    )
    variants = Counter(backbone for backbone, _variant in {(r[0], r[1]) for r in rows})
    row_labels = {
        row: row[0] + (f" ({row[1]})" if variants[row[0]] > 1 and row[1] else "") + (f" [{row[2]}]" if row[2] else "")
        for row in rows
    }
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


# ----------------------------------------------------------------------------- output files


def _format_delta(value: float | None) -> str:
    return "—" if value is None else f"{value:+.3f}"


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def _markdown_table(summary: Summary, table: Table) -> list[str]:
    header, layout = ["backbone"], []
    for dataset in summary.datasets:
        for column in [c for c in table.columns if c[0] == dataset]:
            header.append(f"{dataset}: {column[1]}")
            layout.append(("cell", dataset, column[1]))
        if table.has_delta(dataset):
            header.append(f"{dataset}: {DELTA_HEADER}")
            layout.append(("delta", dataset, None))
        if summary.references and refs.reference(dataset, table.metric) is not None:
            header.append(f"{dataset}: {refs.SOURCE}")
            layout.append(("reference", dataset, None))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in summary.rows:
        if not any(key[1] == row for key in table.cells):
            continue
        texts = [_escape(summary.row_labels[row])]
        for kind, dataset, attention in layout:
            if kind == "delta":
                texts.append(_format_delta(table.delta(dataset, row)))
            elif kind == "reference":
                texts.append(f"{refs.reference(dataset, table.metric):.3f}")
            else:
                cell = table.cells.get((dataset, row, attention))
                texts.append("" if cell is None else cell.text())
        lines.append("| " + " | ".join(texts) + " |")
    return lines


def render_markdown(summary: Summary) -> str:
    """results.md: job counts, one table per metric, notes, and the failed or unfinished jobs."""
    sweep = summary.sweep
    states = Counter(job.state for job in sweep.jobs)
    tally = ", ".join(f"{states[state]} {state}" for state in (FINISHED, FAILED, UNFINISHED))
    counts = f"Job directories: {len(sweep.jobs)} ({tally})"
    if sweep.expected is not None:
        counts += f"; {MULTIRUN_FILE} describes {sweep.expected} jobs ({len(sweep.not_started)} not started)"
    lines = [
        "# Sweep summary",
        "",
        f"Sweep: `{sweep.path}`",
        "",
        counts + ".",
        "",
        "Cells: mean ± sample standard deviation (ddof=1) over the finished jobs (seeds), 3 decimals; "
        "n = jobs with a finite value; with n=1 only the mean is shown, with n=0 `—`. "
        "`k failed` / `k unfinished` count the cell's other jobs (listed at the end). "
        f"{DELTA_HEADER} = mean(global) − mean(none).",
    ]
    for table in summary.tables:
        lines += ["", f"## {table.metric}", ""] + _markdown_table(summary, table)
    if summary.references:
        lines += ["", refs.note(summary.datasets)]
    lines += [""] + comparison_report.markdown_section(summary.comparisons, summary.options, summary.metrics)
    if summary.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in summary.notes]
    lines += ["", "## Failed or unfinished jobs", ""]
    if summary.problems or sweep.not_started:
        lines += ["| job | cell | state | reason |", "|---|---|---|---|"]
        for job, state, reason in summary.problems:
            lines.append(f"| `{job.name}` | {_escape(job.cell_label)} | {state} | {_escape(reason)} |")
        for combination in sweep.not_started:
            lines.append(f"| (no directory) | `{_escape(combination)}` | not started | no job directory yet |")
    else:
        lines.append("None: every job finished with finite metrics.")
    return "\n".join(lines) + "\n"


def _number(value: float | int | None) -> str:
    return "" if value is None else repr(value)


def csv_rows(summary: Summary) -> list[dict[str, str]]:
    """The rows of results.csv (see the module docstring for the columns)."""
    rows = []
    stats = {(c.question.dataset, c.question.row, c.question.metric): c for c in summary.comparisons}
    for table in summary.tables:
        for dataset in summary.datasets:
            for row in summary.rows:
                backbone, variant, setting = row
                base = {
                    "dataset": dataset,
                    "backbone": backbone,
                    "metric": table.metric,
                    "variant": variant,
                    "setting": setting,
                }
                for column in [c for c in table.columns if c[0] == dataset]:
                    cell = table.cells.get((dataset, row, column[1]))
                    if cell is not None:
                        rows.append(
                            {
                                **base,
                                "attention": column[1],
                                "mean": _number(cell.mean),
                                "std": _number(cell.std),
                                "n": str(cell.n),
                                "n_failed": str(cell.n_failed),
                                "n_unfinished": str(cell.n_unfinished),
                                "n_jobs": str(cell.n_jobs),
                            }
                        )
                if table.has_delta(dataset) and all((dataset, row, a) in table.cells for a in DELTA_PAIR):
                    delta = {
                        **base,
                        "attention": DELTA_ATTENTION,
                        "mean": _number(table.delta(dataset, row)),
                        "std": "",
                        "n": "",
                        "n_failed": "",
                        "n_unfinished": "",
                        "n_jobs": "",
                    }
                    rows.append(delta)
                    found = stats.get((dataset, row, table.metric))
                    if found is not None:
                        delta.update(comparison_report.csv_fields(found))
                        rows += [
                            {**delta, **{key: "" for key in comparison_report.CSV_COLUMNS}, **fields}
                            for fields in comparison_report.seed_csv_fields(found)
                        ]
    return [{**dict.fromkeys(CSV_COLUMNS, ""), **row} for row in rows]


def write_csv(summary: Summary, path: str | Path) -> Path:
    path = Path(path)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(csv_rows(summary))
    return path


def plot_summary(summary: Summary, path: str | Path) -> Path:
    """results.png: grouped bars (backbone groups, one bar per attention, std error bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    tables = [table for table in summary.tables if table.metric in summary.metrics]
    attentions = list(dict.fromkeys(a for table in tables for _d, a in table.columns))
    colours = {a: plt.get_cmap("tab10")(i % 10) for i, a in enumerate(attentions)}
    n_rows, n_cols = len(tables), max(1, len(summary.datasets))
    width = max(4.5, 0.5 + 0.35 * len(summary.rows) * max(1, len(attentions)))
    figure, axes = plt.subplots(n_rows, n_cols, figsize=(width * n_cols, 3.4 * n_rows), squeeze=False)
    for i, table in enumerate(tables):
        for j, dataset in enumerate(summary.datasets or ["(no data set)"]):
            axis = axes[i][j]
            shown = [a for d, a in table.columns if d == dataset]
            bar = 0.8 / max(1, len(shown))
            annotate = len(shown) * len(summary.rows) <= 16
            tops: list[float] = []
            for k, attention in enumerate(shown):
                cells = [table.cells.get((dataset, row, attention)) for row in summary.rows]
                means = [math.nan if c is None or c.mean is None else c.mean for c in cells]
                errors = [0.0 if c is None or c.std is None else c.std for c in cells]
                offsets = [r + (k - (len(shown) - 1) / 2) * bar for r in range(len(summary.rows))]
                bars = axis.bar(offsets, means, bar, yerr=errors, capsize=2, color=colours[attention], label=attention)
                if annotate:
                    axis.bar_label(
                        bars,
                        labels=["" if math.isnan(m) else f"{m:.3f}" for m in means],
                        label_type="center",
                        fontsize=7,
                        rotation=90,
                        color="white",
                    )
                tops += [m + e for m, e in zip(means, errors) if not math.isnan(m)]
            if tops:
                axis.set_ylim(0.0, max(max(tops) * 1.25, 1e-6))  # room for the legend above the bars
            else:
                axis.text(0.5, 0.5, "no finished job", ha="center", va="center", transform=axis.transAxes)
            axis.set_xlim(-0.5, max(1, len(summary.rows)) - 0.5)
            axis.set_xticks(range(len(summary.rows)))
            axis.set_xticklabels([summary.row_labels[row] for row in summary.rows], rotation=20, ha="right")
            axis.set_title(f"{dataset}: {table.metric}", fontsize=10)
            axis.set_ylabel(table.metric)
            axis.grid(axis="y", alpha=0.3)
            if shown:
                axis.legend(fontsize=8, ncol=len(shown), loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def write_summary(
    sweep_dir: str | Path,
    metrics: Sequence[str] = DEFAULT_METRICS,
    out_dir: str | Path | None = None,
    options: Options | None = None,
    references: bool = False,
) -> dict[str, Path]:
    """Read a sweep and write results.md, results.csv, results.png and results.tex; returns {kind: path}."""
    summary = summarize(load_sweep(sweep_dir), metrics, options, references)
    target = Path(out_dir) if out_dir is not None else Path(sweep_dir)
    target.mkdir(parents=True, exist_ok=True)
    paths = {kind: target / name for kind, name in RESULT_FILES.items()}
    paths["markdown"].write_text(render_markdown(summary))
    write_csv(summary, paths["csv"])
    plot_summary(summary, paths["plot"])
    paths["latex"].write_text(latex.render_latex(summary))
    return paths
