"""Durable writes: a file is whole or absent, checkpoints never pass through $TMPDIR, last.ckpt is the latest."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from gsa_exp import durable
from gsa_exp.training.checkpoints import BestAndLastCheckpoint, DurableCheckpointIO


def temp_files(directory):
    return sorted(path.name for path in directory.rglob(f"*{durable.TEMP_MARK}*"))


def test_a_durable_write_replaces_the_file_whole_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "metrics.json"
    durable.write_json(target, {"test/acc": 0.5})
    durable.write_json(target, {"test/acc": 0.75})
    assert json.loads(target.read_text()) == {"test/acc": 0.75}
    assert temp_files(tmp_path) == []


def test_a_write_that_fails_midway_keeps_the_old_file_and_removes_its_temp_file(tmp_path):
    target = tmp_path / "predictions_test.csv"
    durable.write_text(target, "0,0.5\n")
    with pytest.raises(RuntimeError, match="disk gone"):
        with durable.durable_open(target, "w") as stream:
            stream.write("0,0.9\n1,")
            raise RuntimeError("disk gone")
    assert target.read_text() == "0,0.5\n"
    assert temp_files(tmp_path) == []


def test_the_temp_file_sits_beside_its_target_and_names_its_writer(tmp_path):
    temp = durable.temp_path(tmp_path / "best.ckpt")
    assert temp.parent == tmp_path and temp.name.startswith(".best.ckpt" + durable.TEMP_MARK)
    assert f"{durable.TEMP_MARK}{__import__('os').getpid()}-" in temp.name and temp.name.endswith(durable.hostname())
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb'"):
        with durable.durable_open(tmp_path / "x", "a"):
            pass


def test_temp_files_of_dead_writers_are_removed_and_a_live_writers_kept(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        host = durable.hostname()
        dead = tmp_path / "checkpoints" / f".last.ckpt{durable.TEMP_MARK}{dead_pid}-1@{host}"
        alive = tmp_path / f".metrics.json{durable.TEMP_MARK}{live.pid}-1@{host}"
        elsewhere = tmp_path / f".status.json{durable.TEMP_MARK}{live.pid}-1@another-host"
        unrelated = tmp_path / "notes.txt"
        for path in (dead, alive, elsewhere, unrelated):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("partial")
        assert durable.remove_abandoned_temp_files(tmp_path) == [dead]
        assert alive.exists() and elsewhere.exists() and unrelated.exists()  # another host's: kept for a day
        old = 2 * durable.OTHER_HOST_TEMP_AGE_S
        __import__("os").utime(elsewhere, (elsewhere.stat().st_atime - old, elsewhere.stat().st_mtime - old))
        assert durable.remove_abandoned_temp_files(tmp_path) == [elsewhere]
    finally:
        live.kill()
        live.wait()


def test_checkpoints_are_written_beside_their_path_never_through_tmpdir(tmp_path, monkeypatch):
    staging = tmp_path / "tmpdir"
    staging.mkdir()
    monkeypatch.setenv("TMPDIR", str(staging))
    monkeypatch.setattr("tempfile.tempdir", None)  # let tempfile read TMPDIR again
    io = DurableCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"epoch": 1, "weights": torch.arange(4.0)}, path)
    assert torch.load(path)["epoch"] == 1
    with pytest.raises(Exception):  # noqa: B017 - whatever pickling raises, the old checkpoint must survive
        io.save_checkpoint({"epoch": 2, "weights": torch.arange(4.0), "bad": lambda: None}, path)
    assert torch.load(path)["epoch"] == 1
    assert list(staging.iterdir()) == [] and temp_files(tmp_path) == []


class TinyRegression(pl.LightningModule):
    """The smallest model whose monitored metric gets worse after its first epoch (the learning rate is absurd)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 1)

    def training_step(self, batch, batch_index):
        inputs, targets = batch
        return nn.functional.mse_loss(self.layer(inputs), targets)

    def validation_step(self, batch, batch_index):
        inputs, targets = batch
        self.log("val/loss", nn.functional.mse_loss(self.layer(inputs), targets))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=10.0)

    def train_dataloader(self):
        generator = torch.Generator().manual_seed(0)
        inputs = torch.randn(20, 2, generator=generator)
        return DataLoader(TensorDataset(inputs, inputs.sum(1, keepdim=True)), batch_size=4)

    val_dataloader = train_dataloader


class RecordingCheckpointIO(DurableCheckpointIO):
    def __init__(self) -> None:
        super().__init__()
        self.saved: list[tuple[str, int, int]] = []

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        super().save_checkpoint(checkpoint, path, storage_options)
        self.saved.append((str(path).rsplit("/", 1)[-1], checkpoint["epoch"], checkpoint["global_step"]))


def fit_tiny(tmp_path, **options) -> tuple[BestAndLastCheckpoint, RecordingCheckpointIO]:
    checkpoint = BestAndLastCheckpoint(
        dirpath=str(tmp_path), filename="best", monitor="val/loss", mode="min", enable_version_counter=False, **options
    )
    io = RecordingCheckpointIO()
    trainer = pl.Trainer(
        max_epochs=3,
        callbacks=[checkpoint],
        plugins=[io],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    torch.manual_seed(0)
    trainer.fit(TinyRegression())
    return checkpoint, io


def test_last_checkpoint_follows_every_epoch_even_when_the_monitored_metric_gets_worse(tmp_path):
    checkpoint, io = fit_tiny(tmp_path)
    best = [entry for entry in io.saved if entry[0] == "best.ckpt"]
    assert len(best) < 3  # the metric did not improve every epoch (Lightning's save_last then skipped last.ckpt)
    assert [entry for entry in io.saved if entry[0] == "last.ckpt"] == [("last.ckpt", e, 5 * (e + 1)) for e in range(3)]
    latest = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert (latest["epoch"], latest["global_step"]) == (2, 15)
    record = next(state for key, state in latest["callbacks"].items() if "BestAndLastCheckpoint" in key)
    assert record["best_model_path"] == checkpoint.best_model_path  # resumes with the best model's record
    assert io.saved.index(best[-1]) < len(io.saved) - 1  # last.ckpt is written after the epoch's best


def test_last_checkpoint_every_n_steps_for_long_epochs(tmp_path):
    _, io = fit_tiny(tmp_path, last_every_n_train_steps=2)
    steps = [step for name, _, step in io.saved if name == "last.ckpt"]
    assert steps == [2, 4, 5, 6, 8, 10, 10, 12, 14, 15]  # every 2 steps, and each epoch's end (5, 10, 15)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"save_last": "link"}, "^callbacks.model_checkpoint.save_last='link': must be true or false$"),
        (
            {"last_every_n_train_steps": 0},
            r"^callbacks.model_checkpoint.last_every_n_train_steps=0: must be >= 1 or null \(epochs only\)$",
        ),
    ],
)
def test_last_checkpoint_options_are_checked(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        BestAndLastCheckpoint(dirpath=str(tmp_path), **options)


def test_save_last_false_writes_no_last_checkpoint(tmp_path):
    _, io = fit_tiny(tmp_path, save_last=False)
    assert {name for name, _, _ in io.saved} == {"best.ckpt"}
