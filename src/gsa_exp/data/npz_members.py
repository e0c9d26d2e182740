"""Arrays of an ``.npz`` archive, mapped from disk instead of loaded whole.

MedMNIST+ files are large (PathMNIST at 224 px holds 13.5 GB of training images), and
``np.load`` of an npz member reads it whole into memory. Here a member stored without
compression is mapped in place (an npz is a zip of ``.npy`` files: the array's bytes sit
in the archive at a known offset); a compressed member is decompressed once, streaming,
into a ``.npy`` file in a cache directory and that file is mapped. Only the pages a batch
touches are read, and they stay reclaimable page cache, not the process's own memory.
"""

from __future__ import annotations

import os
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np

from gsa_exp.data.files import literal
from gsa_exp.errors import OptionMessage

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


def _decompressed(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, cache: Path) -> Path:
    """The member as a ``.npy`` file in ``cache``: made once, again only when the archive is newer."""
    target = cache / info.filename
    if target.is_file() and target.stat().st_mtime_ns >= path.stat().st_mtime_ns:
        return target
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as source, open(partial, "wb") as sink:
            shutil.copyfileobj(source, sink, _COPY_CHUNK)
        os.replace(partial, target)  # atomic: a concurrent job sees the whole file or none
    except OSError as error:
        if partial.is_file():
            partial.unlink()
        raise NpzCacheError(
            f"cannot decompress {literal(info.filename)} of {literal(path)} into the cache directory "
            f"{literal(cache)} ({literal(error)}); "
            "set $source.cache_dir to a writable directory with room for the uncompressed arrays"
        ) from error
    return target
