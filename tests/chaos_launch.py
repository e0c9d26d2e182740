"""Run an entry point and SIGKILL it at one chosen write: ``python chaos_launch.py SCRIPT ARGS...``.

``GSA_CHAOS_KILL=<moment>:<file name>:<n>`` picks the n-th write of a file of that name:

* ``write``: the temp file is half written (cut to half its bytes) when the process dies,
* ``rename``: the temp file is whole and fsynced, not yet renamed over the file,
* ``renamed``: renamed, its directory not yet fsynced.

The writes are found where every durable write passes (``os.fsync`` of a temp file,
``os.replace`` onto the file), so the project itself carries no test hook. The process really
dies by SIGKILL: no ``finally``, no ``atexit``, no Lightning teardown runs.
"""

from __future__ import annotations

import os
import re
import runpy
import signal
import sys
from pathlib import Path

from gsa_exp import durable

MOMENT, NAME, OCCURRENCE = os.environ["GSA_CHAOS_KILL"].split(":")
TEMP = re.compile(r"^\.(?P<name>.+)" + re.escape(durable.TEMP_MARK))
_seen = 0
_fsync, _replace = os.fsync, os.replace


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _counts(name: str) -> bool:
    """Whether this write of ``name`` is the chosen one."""
    global _seen
    if name != NAME:
        return False
    _seen += 1
    return _seen == int(OCCURRENCE)


def fsync(descriptor: int) -> None:
    match = TEMP.match(Path(os.readlink(f"/proc/self/fd/{descriptor}")).name) if MOMENT == "write" else None
    if match and _counts(match["name"]):
        os.ftruncate(descriptor, os.fstat(descriptor).st_size // 2)
        _die()
    _fsync(descriptor)


def replace(source, target, **options) -> None:
    chosen = MOMENT in ("rename", "renamed") and _counts(Path(target).name)
    if chosen and MOMENT == "rename":
        _die()
    _replace(source, target, **options)
    if chosen:
        _die()


os.fsync, os.replace = fsync, replace
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
