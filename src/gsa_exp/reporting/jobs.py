"""Reading a sweep directory into job records: each job's cell, metrics, and why it did not finish.

A job's row is (scheme, resolution, backbone, variant, setting): the training scheme and the
data's resolution name a row only in sweeps that vary them (MedMNIST+'s grid), so rows of one
scheme and resolution stay together and global is compared with none within them.

A job's state is finished, failed, killed or unfinished (the rules: docs/statistics.md); no
job is dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from gsa_exp.reporting.grid import expected_combinations, not_started, override_key
from gsa_exp.run_files import ERROR_FILE, METRICS_FILE, STATUS_FILE, SWEEP_STATUS_FILE
from gsa_exp.run_state import KILLED, completion, read_status, why_killed

FINISHED, FAILED, UNFINISHED = "finished", "failed", "unfinished"  # and KILLED: a running status, its process dead
CONFIG_FILE = Path(".hydra") / "config.yaml"
OVERRIDES_FILE = Path(".hydra") / "overrides.yaml"
MULTIRUN_FILE = "multirun.yaml"
# Override keys already represented by the grid (or pooled on purpose: the seed).
GRID_KEYS = frozenset(
    {
        "dataset",
        "backbone",
        "attention",
        "backbone.variant",
        "seed",
        "scheme",
        "dataset.image_size",
        "dataset.source.size",
    }
)
DEFAULT_SCHEME = "end_to_end"  # runs written before the schemes trained end to end
Row = tuple[str, str, str, str, str]  # (scheme, resolution, backbone, variant, setting); "" = not varied
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
    state: str  # finished | failed | killed | unfinished
    reason: str = ""  # why the job is failed, killed or unfinished
    warning: str = ""  # a file of the job is there but damaged (told on stderr, not only in results.md)
    setting: str = ""  # the sweep's varying overrides beyond the grid keys (set by load_sweep)
    scheme: str = DEFAULT_SCHEME
    resolution: str = ""  # "28 px" (the data's own size), "28 px at 224" when resized
    group: tuple[str, str] = ("", "")  # (scheme, resolution) where the sweep varies them (set by load_sweep)

    @property
    def row(self) -> Row:
        return (*self.group, self.backbone or "?", self.variant or "", self.setting)

    @property
    def cell_label(self) -> str:
        if self.dataset is None:
            return "unknown (config unreadable)"
        backbone = self.backbone + (f" ({self.variant})" if self.variant else "")
        setting = "".join(f" [{part}]" for part in (", ".join(p for p in self.group if p), self.setting) if part)
        return f"{self.dataset} / {backbone}{setting} / {self.attention}"


@dataclass
class Sweep:
    """The jobs of a sweep directory, plus what its multirun.yaml / sweep_status.jsonl tell."""

    path: Path
    jobs: list[Job]
    expected: int | None = None  # jobs the grid in multirun.yaml describes (None: unknown)
    not_started: list[str] = field(default_factory=list)  # override combinations without a directory
    notes: list[str] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        return [f"{job.name}: {job.warning}" for job in self.jobs if job.warning]


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


def _as_floats(raw: dict[str, Any]) -> dict[str, float]:
    metrics = {}
    for key, value in raw.items():
        try:
            metrics[str(key)] = float(value)
        except (TypeError, ValueError):
            metrics[str(key)] = float("nan")
    return metrics


def _failure_reason(path: Path, status: dict[str, Any] | None, sweep_status: dict[str, dict]) -> tuple[str, str]:
    """(state, reason) of a job directory without metrics.json, from its ``read_status``."""
    error = error_line((path / ERROR_FILE).read_text(errors="replace")) if (path / ERROR_FILE).is_file() else None
    if status is not None:
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


def _failed(path: Path, reason: str, **fields: Any) -> Job:
    """A job whose own files (config, metrics) cannot be read."""
    return Job(path.name, path, state=FAILED, reason=_shorten(reason), **fields)


def read_job(path: Path, sweep_status: dict[str, dict] | None = None) -> Job:
    """One job directory: its config, overrides and metrics, and whether it finished."""
    path = Path(path)
    try:
        overrides = tuple(str(item) for item in OmegaConf.load(path / OVERRIDES_FILE) or [])
    except Exception:  # a missing or broken overrides file only loses the setting label
        overrides = ()
    try:
        cfg = OmegaConf.load(path / CONFIG_FILE)
        if not isinstance(cfg, DictConfig):
            raise ValueError("not a mapping")
    except Exception as exc:
        unknown = dict(dataset=None, backbone=None, variant=None, attention=None, seed=None, metrics=None)
        return _failed(path, f"{CONFIG_FILE} unreadable: {exc}", overrides=overrides, **unknown)
    attention = _select(cfg, "attention")
    size, image_size = _select(cfg, "dataset.source.size"), _select(cfg, "dataset.image_size")
    resolution = f"{size if size is not None else image_size} px"
    if size is not None and image_size is not None and size != image_size:
        resolution += f" at {image_size}"
    fields = dict(
        scheme=str(_select(cfg, "scheme.name") or DEFAULT_SCHEME),
        resolution=resolution,
        dataset=str(_select(cfg, "dataset.name") or "unknown"),
        backbone=str(_select(cfg, "backbone.name") or "unknown"),
        variant=None if _select(cfg, "backbone.variant") is None else str(_select(cfg, "backbone.variant")),
        attention="none" if attention is None else str(_select(cfg, "attention.name") or "unknown"),
        seed=_select(cfg, "seed"),
        overrides=overrides,
    )
    done = completion(path)
    if done.metrics is not None:
        return Job(path.name, path, metrics=_as_floats(done.metrics), state=FINISHED, **fields)
    if done.warning:
        return _failed(path, done.reason, metrics=None, warning=done.warning, **fields)
    status = read_status(path)
    killed = why_killed(status) if status is not None else None
    if killed is not None:
        written = f"; its {METRICS_FILE} was written before the end" if (path / METRICS_FILE).is_file() else ""
        reason = _shorten(f"status 'running' but {killed}{written}: relaunch with skip_completed=true to resume")
        return Job(path.name, path, metrics=None, state=KILLED, reason=reason, **fields)
    state, reason = _failure_reason(path, status, sweep_status or {})
    if state == UNFINISHED and (path / METRICS_FILE).is_file():
        reason = f"{METRICS_FILE} without a completed {STATUS_FILE}: " + (
            "still running" if status is not None else "the run never recorded its end"
        )
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


def _job_dirs(sweep_dir: Path) -> list[Path]:
    found = [child for child in sweep_dir.iterdir() if child.is_dir() and (child / ".hydra").is_dir()]
    return sorted(found, key=lambda child: _job_number(child.name))


def _varying_keys(jobs: Sequence[Job]) -> list[str]:
    """Override keys whose value is not the same in every job (grid keys and the seed aside)."""
    values: dict[str, set] = {}
    for job in jobs:
        mine = {override_key(item): item for item in job.overrides}
        for key in set(values) | set(mine):
            values.setdefault(key, set()).add(mine.get(key))
    return sorted(key for key, seen in values.items() if len(seen) > 1 and key not in GRID_KEYS)


def _set_groups(jobs: Sequence[Job]) -> None:
    """Each job's (scheme, resolution) part of its row: the scheme where the sweep has several, the
    resolution where a data set is read at several (data sets of their own sizes are not split)."""
    placed = [job for job in jobs if job.dataset is not None]
    schemes = len({job.scheme for job in placed}) > 1
    sizes: dict[str, set[str]] = {}
    for job in placed:
        sizes.setdefault(job.dataset, set()).add(job.resolution)
    resolutions = any(len(seen) > 1 for seen in sizes.values())
    for job in placed:
        job.group = (job.scheme if schemes else "", job.resolution if resolutions else "")


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
    _set_groups(jobs)
    varying = _varying_keys(jobs)
    for job in jobs:
        mine = {override_key(item): item for item in job.overrides}
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
            sweep.expected = len(combinations)
            sweep.not_started = not_started(combinations, [job.overrides for job in jobs])
    return sweep
