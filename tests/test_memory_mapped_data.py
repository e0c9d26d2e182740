"""MedMNIST+ files larger than memory: npz members are mapped, never loaded whole."""

from __future__ import annotations

import json
import os
import re
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT
from data_files import medmnist_arrays, medmnist_source

from gsa_exp.config.validation import option_errors_located
from gsa_exp.data import DataFormatError
from gsa_exp.data.npz_members import NpzCacheError, default_cache_dir, map_npz_members

KEYS = [f"{split}_{kind}" for split in ("train", "val", "test") for kind in ("images", "labels")]


def test_stored_members_are_mapped_in_place(tmp_path):
    arrays = medmnist_arrays()
    path = tmp_path / "pneumoniamnist.npz"
    np.savez(path, **arrays)  # ZIP_STORED: the arrays' bytes lie in the archive as they are
    mapped = map_npz_members(path, KEYS)
    for key in KEYS:
        assert isinstance(mapped[key], np.memmap) and Path(mapped[key].filename) == path, key
        assert mapped[key].dtype == arrays[key].dtype and np.array_equal(mapped[key], arrays[key]), key
    assert not default_cache_dir(path).exists()  # nothing decompressed, nothing copied
    mapped["train_images"][0] = 7  # copy-on-write: the process's page changes, the file does not
    assert np.array_equal(map_npz_members(path, ["train_images"])["train_images"], arrays["train_images"])


def test_compressed_members_are_decompressed_once_into_the_cache(tmp_path):
    arrays = medmnist_arrays()
    path = tmp_path / "pneumoniamnist.npz"
    np.savez_compressed(path, **arrays)
    first = map_npz_members(path, KEYS)
    cache = default_cache_dir(path)
    cached = {key: cache / f"{key}.npy" for key in KEYS}
    for key in KEYS:
        assert Path(first[key].filename) == cached[key] and np.array_equal(first[key], arrays[key]), key
    made = {key: file.stat().st_mtime_ns for key, file in cached.items()}
    map_npz_members(path, KEYS)
    assert {key: file.stat().st_mtime_ns for key, file in cached.items()} == made  # not decompressed again

    os.utime(path, ns=(max(made.values()) + 10**9,) * 2)  # a newer archive (e.g. re-downloaded)
    map_npz_members(path, KEYS)
    assert all(file.stat().st_mtime_ns > made[key] for key, file in cached.items())

    elsewhere = tmp_path / "cache-elsewhere"
    moved = map_npz_members(path, ["val_images"], cache_dir=elsewhere)
    assert Path(moved["val_images"].filename) == elsewhere / "val_images.npy"


def test_the_source_reads_through_the_configured_cache_directory(tmp_path):
    arrays = medmnist_arrays(colour=True)
    np.savez_compressed(tmp_path / "bloodmnist.npz", **arrays)
    source = medmnist_source(tmp_path, flag="bloodmnist")
    source.cache_dir = tmp_path / "cache"
    data = source.load()
    assert (tmp_path / "cache" / "train_images.npy").is_file()
    expected = np.transpose(arrays["train_images"], (0, 3, 1, 2))
    assert np.array_equal(data.train.images.numpy(), expected)  # N x C x H x W view of the mapped N x H x W x C


def test_an_unwritable_cache_directory_is_named_with_the_option_to_set(tmp_path):
    path = tmp_path / "pneumoniamnist.npz"
    np.savez_compressed(path, **medmnist_arrays())
    blocker = tmp_path / "not-a-$source-directory"
    blocker.write_text("a file where the cache directory should be")
    where = re.escape(f"into the cache directory {blocker} (")
    with pytest.raises(NpzCacheError, match=where + r".*; set source.cache_dir to a writable directory"):
        map_npz_members(path, ["train_images"], cache_dir=blocker)
    with pytest.raises(NpzCacheError, match=where + r".*; set dataset.source.cache_dir to a writable directory"):
        with option_errors_located():  # as train.py reports it
            map_npz_members(path, ["train_images"], cache_dir=blocker)


def test_a_truncated_archive_is_reported_as_a_format_error(tmp_path):
    path = tmp_path / "pneumoniamnist.npz"
    np.savez(path, **medmnist_arrays())
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataFormatError, match="cannot read it as a MedMNIST .npz archive"):
        medmnist_source(tmp_path).load()


# -- resident memory while training ---------------------------------------------------------
PROBE = """
import json, sys
sys.path.insert(0, {tests!r})
from conftest import compose_config
from gsa_exp.training.train import train

def anonymous_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("RssAnon:"))

cfg = compose_config({overrides!r}, output_dir={output!r})
before = anonymous_kib()
metrics = train(cfg)
print(json.dumps({{"growth_kib": anonymous_kib() - before, "acc": metrics["test/acc"]}}))
"""


def write_large_stored_npz(path: Path, train_count: int, size: int) -> int:
    """A PneumoniaMNIST-format file at ``size`` px, stored (uncompressed) like np.savez writes it."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in (("train", train_count), ("val", 16), ("test", 16)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (count, size, size), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(count) % 2).astype(np.uint8)[:, None]
    np.savez(path, **arrays)
    with zipfile.ZipFile(path) as archive:
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
    return path.stat().st_size


def resident_growth_kib(tmp_path: Path, name: str, train_count: int) -> tuple[int, int]:
    root = tmp_path / name
    root.mkdir()
    file_bytes = write_large_stored_npz(root / "pneumoniamnist_224.npz", train_count, 224)
    overrides = [
        "dataset=pneumoniamnist",
        f"dataset.root={root}",
        "dataset.source.size=224",
        "dataset.batch_size=2",
        "dataset.eval_batch_size=8",
        "attention=none",
        "backbone=resnet",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "callbacks.attention_map=null",
    ]
    script = PROBE.format(tests=str(ROOT / "tests"), overrides=overrides, output=str(tmp_path / f"{name}-run"))
    done = run_script_code(script)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert 0.0 <= result["acc"] <= 1.0
    return result["growth_kib"], file_bytes


def run_script_code(code: str):
    import subprocess

    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_training_on_a_file_of_hundreds_of_megabytes_keeps_resident_memory_flat(tmp_path):
    """The same short run on a 3 MB and a 300 MB file: the larger file adds (almost) no private memory.

    Loaded whole, the larger file would add its 300 MB; the two runs differ by about 20 MB of noise.
    """
    small_growth, small_bytes = resident_growth_kib(tmp_path, "small", 64)
    large_growth, large_bytes = resident_growth_kib(tmp_path, "large", 6_000)
    assert large_bytes > 280 * 2**20
    extra_kib = large_growth - small_growth
    print(f"private memory growth: {small_growth} KiB (3 MB file), {large_growth} KiB (300 MB file)")
    assert extra_kib * 1024 < 0.15 * (large_bytes - small_bytes), (small_growth, large_growth)
