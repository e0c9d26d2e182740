"""The npz cache survives kills: valid only for the archive it was made from, rebuilt when damaged."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
from data_files import medmnist_arrays

from gsa_exp import durable
from gsa_exp.data.npz_members import default_cache_dir, map_npz_members


def archive(tmp_path, seed: int = 0):
    arrays = medmnist_arrays()
    arrays["train_images"] = np.random.default_rng(seed).integers(0, 256, arrays["train_images"].shape, dtype=np.uint8)
    path = tmp_path / "pneumoniamnist.npz"
    np.savez_compressed(path, **arrays)
    return path, arrays


def test_an_archive_replaced_by_other_data_with_an_older_mtime_is_not_read_from_the_stale_cache(tmp_path):
    path, _ = archive(tmp_path, seed=0)
    map_npz_members(path, ["train_images"])
    cached = default_cache_dir(path) / "train_images.npy"
    made = cached.stat().st_mtime_ns
    path.unlink()
    _, replacement = archive(tmp_path, seed=1)
    os.utime(path, ns=(made - 10**10,) * 2)  # older than the cache: mtime alone would keep the stale file
    mapped = map_npz_members(path, ["train_images"])
    assert np.array_equal(mapped["train_images"], replacement["train_images"])


def test_a_truncated_or_empty_cache_file_is_rebuilt_with_a_warning(tmp_path, caplog):
    path, arrays = archive(tmp_path)
    map_npz_members(path, ["train_images"])
    cached = default_cache_dir(path) / "train_images.npy"
    whole = cached.stat().st_size
    for cut in (whole // 2, 0):
        caplog.clear()
        with open(cached, "r+b") as stream:
            stream.truncate(cut)
        mapped = map_npz_members(path, ["train_images"])
        assert np.array_equal(mapped["train_images"], arrays["train_images"])
        assert f"holds {cut} of {whole} bytes" in caplog.text and "Rebuilding the cache file" in caplog.text


def test_a_cache_file_without_its_record_is_rebuilt(tmp_path, caplog):
    path, arrays = archive(tmp_path)
    map_npz_members(path, ["train_images"])
    (default_cache_dir(path) / "train_images.npy.source.json").unlink()  # killed between the file and its record
    assert np.array_equal(map_npz_members(path, ["train_images"])["train_images"], arrays["train_images"])
    assert "no readable record" in caplog.text


def test_partial_files_of_dead_builds_are_removed_and_a_live_builds_kept(tmp_path):
    path, _ = archive(tmp_path)
    cache = default_cache_dir(path)
    cache.mkdir()
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(finished.stdout)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        legacy_dead = cache / f"train_images.npy.partial-{dead}"
        legacy_live = cache / f"val_images.npy.partial-{live.pid}"
        temp_dead = cache / f".test_images.npy{durable.TEMP_MARK}{dead}-3@{durable.hostname()}"
        for leftover in (legacy_dead, legacy_live, temp_dead):
            leftover.write_bytes(b"\x93NUMPY half")
        map_npz_members(path, ["train_images"])
        assert not legacy_dead.exists() and not temp_dead.exists() and legacy_live.exists()
    finally:
        live.kill()
        live.wait()
