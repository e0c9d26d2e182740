"""Arrays of an ``.npz`` archive, mapped from disk instead of loaded whole.

MedMNIST+ files are large (PathMNIST at 224 px holds 13.5 GB of training images), and
``np.load`` of an npz member reads it whole into memory (it ignores ``mmap_mode`` for an npz).
Here a member stored without compression is mapped in place (an npz is a zip of ``.npy`` files:
the array's bytes sit in the archive at a known offset); a compressed member is decompressed
once, streaming, into a ``.npy`` file in a cache directory and that file is mapped. Only the
pages a batch touches are read, and they stay reclaimable page cache, not the process's own memory.

A cache file is valid only for the archive it was made from: the archive's size and mtime and
the member's CRC-32 and size, all read from the zip's central directory (no data read), are
kept beside it (``<member>.npy.source.json``). A cache file of another archive (replaced, even
by one with an older mtime), a truncated or empty one, or one whose record is missing is
rebuilt with a warning; the temp files of killed builds are removed before a build.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from gsa_exp import durable
from gsa_exp.data.files import literal
from gsa_exp.errors import OptionMessage

log = logging.getLogger(__name__)

_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # a zip member's local file header (30 bytes)
_COPY_CHUNK = 16 * 2**20


class NpzCacheError(OptionMessage, OSError):
    """A compressed member could not be decompressed into the cache directory; names ``$source.cache_dir``."""

    component = "dataset"


def default_cache_dir(path: Path) -> Path:
    """Beside the archive: ``pathmnist_224.npz`` -> ``pathmnist_224.npz-cache/``."""
    return path.with_name(path.name + "-cache")


def map_npz_members(path: Path, keys: list[str], cache_dir: Path | None = None) -> dict[str, np.ndarray]:
    """The members ``keys`` of the archive at ``path`` that exist, as copy-on-write memory maps.

    Writing to an array changes the process's copy only, never the file.
    """
    cache = cache_dir if cache_dir is not None else default_cache_dir(path)
    arrays: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: info for info in archive.infolist()}
        for key in keys:
            info = members.get(f"{key}.npy")
            if info is None:
                continue
            if info.compress_type == zipfile.ZIP_STORED:
                arrays[key] = _map_stored(path, info)
            else:
                arrays[key] = np.load(_decompressed(archive, info, path, cache), mmap_mode="c", allow_pickle=False)
    return arrays


def npz_keys(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return sorted(name.removesuffix(".npy") for name in archive.namelist())


def _map_stored(path: Path, info: zipfile.ZipInfo) -> np.ndarray:
    with open(path, "rb") as file:
        file.seek(info.header_offset)
        header = _LOCAL_HEADER.unpack(file.read(_LOCAL_HEADER.size))
        if header[0] != b"PK\x03\x04":
            raise ValueError(f"member {info.filename!r} has no valid zip header")
        name_length, extra_length = header[-2], header[-1]
        file.seek(info.header_offset + _LOCAL_HEADER.size + name_length + extra_length)
        shape, fortran_order, dtype = _npy_header(file)
        offset = file.tell()
    if dtype.hasobject:
        raise ValueError(f"member {info.filename!r} holds Python objects, not numbers")
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype=dtype)  # a memory map cannot be empty
    return np.memmap(path, dtype=dtype, mode="c", offset=offset, shape=shape, order="F" if fortran_order else "C")


def _npy_header(file: object) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(file)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(file)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(file)
    raise ValueError(f"unsupported .npy format version {version}")


_LEGACY_PARTIAL = re.compile(r"\.partial-(\d+)$")  # temp files of builds before durable writes


def source_record(path: Path, info: zipfile.ZipInfo) -> dict[str, Any]:
    """What identifies the archive member a cache file was made from."""
    stat = path.stat()
    return {
        "archive_size": stat.st_size,
        "archive_mtime_ns": stat.st_mtime_ns,
        "member": info.filename,
        "member_crc32": info.CRC,
        "member_size": info.file_size,
    }


def _record_path(target: Path) -> Path:
    return target.with_name(target.name + ".source.json")


def _stale_reason(target: Path, record: dict[str, Any]) -> str | None:
    """Why the cache file cannot be used for the archive ``record`` describes; None when it can."""
    if not target.is_file():
        return "" if not _record_path(target).is_file() else "its record is there but the file is not"
    try:
        kept = json.loads(_record_path(target).read_text())
    except (OSError, ValueError):
        return "it has no readable record of the archive it was made from"
    if kept != record:
        return "it was made from another version of the archive"
    size = target.stat().st_size
    if size != record["member_size"]:
        return f"it holds {size} of {record['member_size']} bytes"
    return None


def _remove_dead_builds(cache: Path) -> None:
    durable.remove_abandoned_temp_files(cache, recursive=False)
    for partial in cache.glob("*.partial-*"):
        match = _LEGACY_PARTIAL.search(partial.name)
        if match and not durable.process_alive(int(match.group(1))):
            partial.unlink(missing_ok=True)


def _decompressed(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, cache: Path) -> Path:
    """The member as a ``.npy`` file in ``cache``: made once, again when it is not whole or not this archive's."""
    target = cache / info.filename
    record = source_record(path, info)
    reason = _stale_reason(target, record)
    if reason is None:
        return target
    if reason:
        log.warning("Rebuilding the cache file %s of %s: %s", target, path, reason)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        _remove_dead_builds(cache)
        with archive.open(info) as source, durable.durable_open(target, "wb") as sink:
            shutil.copyfileobj(source, sink, _COPY_CHUNK)  # a concurrent job sees the whole file or none
        durable.write_json(_record_path(target), record)
    except OSError as error:
        raise NpzCacheError(
            f"cannot decompress {literal(info.filename)} of {literal(path)} into the cache directory "
            f"{literal(cache)} ({literal(error)}); "
            "set $source.cache_dir to a writable directory with room for the uncompressed arrays"
        ) from error
    return target
