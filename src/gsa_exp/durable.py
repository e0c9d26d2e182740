"""Files that are whole or absent, whatever kills the writer: written to a temp file in the
target's own directory, fsynced, renamed into place, the directory fsynced. Never via ``$TMPDIR``:
on another filesystem a rename is a copy that a kill can cut. A temp file's name carries its
writer's pid and host (``.metrics.json.gsa-tmp-4242-1@node7``), so a later start can remove the
leftovers of dead writers and keep a live one's. Imports nothing of the project: every layer uses it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

TEMP_MARK = ".gsa-tmp-"
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)" + re.escape(TEMP_MARK) + r"(?P<pid>\d+)-\d+@(?P<host>.+)$")
OTHER_HOST_TEMP_AGE_S = 24 * 3600  # another host's writer cannot be asked whether it lives: wait a day
_counter = itertools.count(1)


def hostname() -> str:
    return socket.gethostname() or "localhost"


def temp_path(path: Path) -> Path:
    """The temp file a write of ``path`` goes through: same directory, so the rename is atomic."""
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}-{next(_counter)}@{hostname()}")


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a power loss keeps the new name)."""
    with contextlib.suppress(OSError):  # some filesystems (and Windows) cannot open a directory
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


@contextlib.contextmanager
def durable_open(
    path: str | Path, mode: str = "wb", encoding: str | None = None, newline: str | None = None
) -> Iterator[IO[Any]]:
    """A file to write ``path`` through: on a clean exit it is fsynced and renamed into place;
    on an exception the temp file is removed and ``path`` keeps what it held."""
    if mode not in ("w", "wb"):
        raise ValueError(f"durable_open writes whole files: mode must be 'w' or 'wb', not {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path(target)
    try:
        text = {"encoding": encoding or "utf-8", "newline": newline} if "b" not in mode else {}
        with open(temp, mode, **text) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    fsync_directory(target.parent)


def write_bytes(path: str | Path, data: bytes) -> None:
    with durable_open(path, "wb") as stream:
        stream.write(data)


def write_text(path: str | Path, text: str) -> None:
    with durable_open(path, "w", encoding="utf-8") as stream:
        stream.write(text)


def write_json(path: str | Path, values: Any) -> None:
    """JSON with sorted keys and a final newline, written durably."""
    write_text(path, json.dumps(values, indent=2, sort_keys=True, default=str) + "\n")


def append_line(path: str | Path, line: str) -> None:
    """Append one line and fsync it (a kill can cut only the line being written; readers skip a bad line)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "a", encoding="utf-8") as stream:
        stream.write(line.rstrip("\n") + "\n")
        stream.flush()
        os.fsync(stream.fileno())


def process_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host (a pid can be reused: callers that care compare more)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def is_temp_file(path: Path) -> bool:
    return _TEMP_NAME.match(path.name) is not None


def abandoned(path: Path, now: float | None = None) -> bool:
    """Whether ``path`` is a temp file whose writer is gone: dead on this host, or a day old from another host.

    Called where this process has no write in flight (a run's start, before a cache build), so a temp
    file of its own pid is a dead process's whose pid came round again (containers reuse small pids).
    """
    match = _TEMP_NAME.match(path.name)
    if match is None:
        return False
    pid, host = int(match["pid"]), match["host"]
    if host == hostname():
        return pid == os.getpid() or not process_alive(pid)
    try:
        age = (now if now is not None else time.time()) - path.stat().st_mtime
    except OSError:
        return False
    return age > OTHER_HOST_TEMP_AGE_S


def remove_abandoned_temp_files(directory: str | Path, recursive: bool = True) -> list[Path]:
    """Delete the temp files of killed writes under ``directory``; returns what was removed."""
    root = Path(directory)
    if not root.is_dir():
        return []
    candidates = root.rglob(f"*{TEMP_MARK}*") if recursive else root.glob(f"*{TEMP_MARK}*")
    removed = []
    for path in candidates:
        if path.is_file() and abandoned(path):
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed


def save_figure(figure: Any, path: str | Path, **options: Any) -> Path:
    """A matplotlib figure saved durably, in the format its suffix names (``.png``, ``.pdf``)."""
    target = Path(path)
    with durable_open(target, "wb") as stream:
        figure.savefig(stream, format=target.suffix.lstrip(".") or "png", **options)
    return target
