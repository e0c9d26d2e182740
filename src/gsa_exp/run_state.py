"""A run's life in ``status.json``, and the one definition of a completed run.

``running`` from the start (pid, host, process start time, a heartbeat each epoch), then
``completed``, ``failed`` or ``interrupted``. A run killed hard writes no end, so a reader decides:
``running`` with its process gone (same host) or a stale heartbeat is ``killed``. Completed means
``status.json`` says ``completed`` and ``metrics.json`` is a readable object; the sweep summary and
``skip_completed`` both ask :func:`completion`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gsa_exp import durable
from gsa_exp.run_files import METRICS_FILE, STATUS_FILE

RUNNING, COMPLETED, FAILED, INTERRUPTED, KILLED = "running", "completed", "failed", "interrupted", "killed"
# A heartbeat is written every epoch; a run is stale when none came for this long, or for three of its
# epochs when those are longer (an hour covers set-up: reading data, building the pixel bank).
STALE_AFTER_S = 3600.0
STALE_EPOCHS = 3


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def process_start_ticks(pid: int) -> int | None:
    """When the process started (clock ticks since boot, /proc): tells a live run from a reused pid."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def running_record() -> dict[str, Any]:
    """The status of a run starting now, in this process."""
    pid = os.getpid()
    started = now_iso()
    return {
        "status": RUNNING,
        "pid": pid,
        "host": durable.hostname(),
        "process_started": process_start_ticks(pid),
        "started_at": started,
        "heartbeat_at": started,
    }


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """status.json as a dict; None when absent; ``{"status": "unreadable", ...}`` when it cannot be parsed."""
    path = Path(run_dir) / STATUS_FILE
    if not path.is_file():
        return None
    try:
        status = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        return {"status": "unreadable", "error": f"{STATUS_FILE} unreadable: {error}"}
    return status if isinstance(status, dict) else {"status": str(status)}


def _seconds_since(stamp: Any, now: float) -> float | None:
    try:
        return now - datetime.fromisoformat(str(stamp)).timestamp()
    except ValueError:
        return None


def why_killed(status: dict[str, Any], now: float | None = None) -> str | None:
    """For a ``running`` status: why its run is dead (process gone, heartbeat stale), or None if it may live."""
    if str(status.get("status", "")).lower() != RUNNING:
        return None
    now = time.time() if now is None else now
    pid, host = status.get("pid"), status.get("host")
    if isinstance(pid, int) and host == durable.hostname():
        if not durable.process_alive(pid):
            return f"its process {pid} on {host} is gone"
        started = status.get("process_started")
        if started is not None and process_start_ticks(pid) not in (None, started):
            return f"its process {pid} on {host} is gone (the pid now belongs to another process)"
    silent = _seconds_since(status.get("heartbeat_at"), now)
    epoch = status.get("epoch_seconds")
    limit = max(STALE_AFTER_S, STALE_EPOCHS * epoch if isinstance(epoch, (int, float)) else 0.0)
    if silent is not None and silent > limit:
        return f"no heartbeat for {silent / 3600:.1f} h (stale after {limit / 3600:.1f} h)"
    return None


def life_state(status: dict[str, Any] | None, now: float | None = None) -> str | None:
    """The status word, with a dead ``running`` run shown as ``killed``; None without status.json."""
    if status is None:
        return None
    return KILLED if why_killed(status, now) else str(status.get("status", "")).lower()


@dataclass(frozen=True)
class Completion:
    """Whether a run directory holds a completed run: its metrics, or why not (``warning`` for damage)."""

    metrics: dict[str, Any] | None
    reason: str = ""
    warning: str = ""  # set when a file is there but unreadable: worth telling the user


def completion(run_dir: Path) -> Completion:
    """The one definition of completed: status.json says ``completed`` and metrics.json is a readable object."""
    run_dir = Path(run_dir)
    status = read_status(run_dir)
    word = life_state(status)
    if word != COMPLETED:
        reason = f"no {STATUS_FILE}" if word is None else f"status {word!r}"
        return Completion(None, reason)
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return Completion(None, f"status 'completed' but no {METRICS_FILE}")
    try:
        values = json.loads(path.read_text())
        if not isinstance(values, dict):
            raise ValueError(f"expected a JSON object, got {type(values).__name__}")
    except (OSError, ValueError) as error:
        message = f"{METRICS_FILE} unreadable: {error}"
        return Completion(None, message, warning=f"{path}: {message}")
    return Completion(values)
