"""Chaos: training processes SIGKILLed at chosen writes, then relaunched.

Each scenario kills a real ``train.py`` process (``chaos_launch.py``: SIGKILL at the n-th write of
a file) with ``$TMPDIR`` on another filesystem (/dev/shm where there is one), then checks what a
user finds: every file present loads or parses, the run reads as ``killed``, and a
``skip_completed=true`` relaunch into the same directory resumes and ends with metrics identical
to an uninterrupted run's, leaving no temp file anywhere.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import QUIET, ROOT
from PIL import Image

from gsa_exp import durable
from gsa_exp.run_state import KILLED, completion, life_state, read_status

pytestmark = pytest.mark.slow

SIZES = {"train": 64, "val": 16, "test": 16}
RUN = [
    *QUIET,
    "dataset=pneumoniamnist",
    "dataset.batch_size=16",
    "dataset.eval_batch_size=16",
    "trainer.max_epochs=2",
    "trainer.deterministic=true",
    "trainer.num_sanity_val_steps=0",
    "callbacks.attention_map.log_images=false",
]
# (name, moment:file:occurrence). status.json is written: running (1), at fit start (2), after epochs 0 and 1
# (3, 4), at test start (5), completed (6). last.ckpt after epochs 0 and 1; best.ckpt when val/auroc improves.
SINGLE_RUN_KILLS = [
    ("mid-write of the first best.ckpt", "write:best.ckpt:1"),
    ("mid-write of epoch 1's last.ckpt", "write:last.ckpt:2"),
    ("last.ckpt whole, not yet renamed", "rename:last.ckpt:1"),
    ("last.ckpt renamed, directory not fsynced", "renamed:last.ckpt:2"),
    ("mid-write of provenance.json", "write:provenance.json:1"),
    ("mid-write of a heartbeat", "write:status.json:3"),
    ("mid-write of metrics.json", "write:metrics.json:1"),
    ("mid-write of predictions_val.csv", "write:predictions_val.csv:1"),
    ("mid-write of attention_map.npy", "write:attention_map.npy:1"),
    ("before the completed status lands", "rename:status.json:6"),
    ("mid-write of the npz cache", "write:train_images.npy:1"),
]


def write_archive(root: Path) -> None:
    """A compressed pneumoniamnist.npz (so its members go through the cache) whose classes differ in brightness."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in SIZES.items():
        labels = rng.integers(0, 2, (count, 1), dtype=np.uint8)
        noise = rng.integers(0, 160, (count, 28, 28))
        arrays[f"{split}_images"] = (noise + 90 * labels[:, :, None]).astype(np.uint8)
        arrays[f"{split}_labels"] = labels
    root.mkdir(parents=True)
    np.savez_compressed(root / "pneumoniamnist.npz", **arrays)


def launch(
    run_dir: Path, data: Path, tmpdir: Path, *extra: str, kill: str | None = None
) -> subprocess.CompletedProcess:
    arguments = [*RUN, f"dataset.root={data}", f"hydra.run.dir={run_dir}", *extra]
    entry = [str(ROOT / "tests" / "chaos_launch.py"), str(ROOT / "train.py")] if kill else [str(ROOT / "train.py")]
    env = {**os.environ, "TMPDIR": str(tmpdir), "PYTHONUNBUFFERED": "1"}
    if kill:
        env["GSA_CHAOS_KILL"] = kill
    return subprocess.run([sys.executable, *entry, *arguments], cwd=ROOT, env=env, capture_output=True, text=True)


def check_every_file_loads(run_dir: Path) -> list[str]:
    """Open every file a run leaves (temp files aside); returns the names checked."""
    checked = []
    for path in sorted(run_dir.rglob("*")):
        if not path.is_file() or durable.is_temp_file(path) or "tensorboard" in path.parts:
            continue
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".csv":
            rows = list(csv.reader(path.read_text().splitlines()))
            assert rows and all(float(value) == float(value) for row in rows for value in row), path
        elif path.suffix == ".ckpt":
            assert "state_dict" in torch.load(path, map_location="cpu", weights_only=False), path
        elif path.suffix in (".npy", ".npz"):
            np.load(path)
        elif path.suffix == ".png":
            Image.open(path).verify()
        checked.append(path.name)
    return checked


def temp_files(*directories: Path) -> list[Path]:
    return [path for directory in directories for path in directory.rglob(f"*{durable.TEMP_MARK}*")]


@pytest.fixture(scope="module")
def chaos(tmp_path_factory):
    """Data, a $TMPDIR on another filesystem, and the metrics of an uninterrupted run."""
    base = tmp_path_factory.mktemp("chaos")
    data = base / "data"
    write_archive(data)
    shm = Path("/dev/shm")
    tmpdir = Path(tempfile.mkdtemp(dir=shm if shm.is_dir() and os.access(shm, os.W_OK) else base))
    reference = launch(base / "reference", data, tmpdir)
    assert reference.returncode == 0, reference.stderr[-3000:]
    yield base, data, tmpdir, json.loads((base / "reference" / "metrics.json").read_text())
    assert [path for path in tmpdir.rglob("*") if path.is_file()] == []  # nothing was staged in $TMPDIR
    shutil.rmtree(tmpdir)  # (torch leaves an empty torchinductor_<user> directory there)


def relaunch_and_compare(run_dir: Path, data: Path, tmpdir: Path, expected: dict, *extra: str) -> None:
    again = launch(run_dir, data, tmpdir, "skip_completed=true", *extra)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((run_dir / "metrics.json").read_text()) == expected
    assert read_status(run_dir)["status"] == "completed"
    assert temp_files(run_dir, data, tmpdir) == []


@pytest.mark.parametrize(("moment", "kill"), SINGLE_RUN_KILLS, ids=[name for name, _ in SINGLE_RUN_KILLS])
def test_a_run_killed_at_a_write_leaves_whole_files_and_resumes_to_the_same_metrics(chaos, moment, kill):
    base, data, tmpdir, expected = chaos
    run_dir = base / kill.replace(":", "-")
    cache = base / f"cache-{run_dir.name}"  # the cache scenario builds its own cache
    extra = [f"dataset.source.cache_dir={cache}"] if ".npy:" in kill else []
    killed = launch(run_dir, data, tmpdir, *extra, kill=kill)
    assert killed.returncode == -signal.SIGKILL, f"{moment}: not killed\n{killed.stderr[-3000:]}"
    check_every_file_loads(run_dir)
    assert life_state(read_status(run_dir)) == KILLED and completion(run_dir).metrics is None  # never "done"
    if "last.ckpt:2" in kill:  # the epoch before is there, whole, to resume from
        assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["epoch"] == (
            1 if kill.startswith("renamed") else 0
        )
    relaunch_and_compare(run_dir, data, tmpdir, expected, *extra)
    assert not cache.exists() or temp_files(cache) == []


def test_a_sweep_killed_mid_job_keeps_its_finished_job_and_resumes_the_killed_one(chaos):
    base, data, tmpdir, expected = chaos
    sweep_dir = base / "sweep"
    sweep = ["seed=0,0", f"hydra.sweep.dir={sweep_dir}"]
    env = {**os.environ, "TMPDIR": str(tmpdir), "GSA_CHAOS_KILL": "renamed:last.ckpt:3"}  # job 1, after its epoch 0
    command = [sys.executable, str(ROOT / "tests" / "chaos_launch.py"), str(ROOT / "train.py"), "-m", *RUN]
    killed = subprocess.run([*command, f"dataset.root={data}", *sweep], cwd=ROOT, env=env, capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    first, second = sorted((path for path in sweep_dir.iterdir() if path.is_dir()), key=lambda path: path.name)
    assert read_status(first)["status"] == "completed" and life_state(read_status(second)) == KILLED
    summary = subprocess.run([sys.executable, str(ROOT / "scripts" / "summarize.py"), str(sweep_dir)], text=True,
                             capture_output=True)  # fmt: skip
    assert summary.returncode == 0 and "(1 finished, 0 failed, 1 killed, 0 unfinished)" in summary.stdout
    finished = (first / "metrics.json").read_text()

    again = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "-m", *RUN, f"dataset.root={data}", *sweep, "skip_completed=true"],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmpdir)},
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"Already completed in {first}" in again.stderr + again.stdout
    assert f"Resuming from this run directory's {second / 'checkpoints' / 'last.ckpt'}" in again.stderr + again.stdout
    assert (first / "metrics.json").read_text() == finished
    assert json.loads((second / "metrics.json").read_text()) == expected
    assert temp_files(sweep_dir, tmpdir) == []


def test_a_slurm_job_requeued_into_its_directory_resumes_from_its_last_checkpoint(chaos):
    """As submitit requeues a preempted job: the same command, the same run directory, a SLURM job id."""
    base, data, tmpdir, expected = chaos
    run_dir = base / "slurm-requeued"
    killed = launch(run_dir, data, tmpdir, kill="renamed:last.ckpt:1")  # preempted after its first epoch
    assert killed.returncode == -signal.SIGKILL
    requeued = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *RUN, f"dataset.root={data}", f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmpdir), "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "gsa-grid"},
        capture_output=True,
        text=True,
    )
    assert requeued.returncode == 0, requeued.stderr[-3000:]
    assert "Resuming from this run directory's" in requeued.stderr + requeued.stdout
    assert json.loads((run_dir / "metrics.json").read_text()) == expected
    assert temp_files(run_dir, tmpdir) == []
