"""Reliability: bad input stops early and clearly, interruptions resume exactly, sweeps survive failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import QUIET, ROOT, TINY_DATA, compose_config, run_script

from gsa_exp.config.validation import ConfigError, validate_train_config
from gsa_exp.training.train import train

LIMITED = [*TINY_DATA, *QUIET, "debug=limit"]

# (overrides, the start of the message after "Invalid config: ")
BAD_INPUTS = [
    (["optimizer.lr=-0.1"], "optimizer.lr=-0.1: must be > 0"),
    (["optimizer.lr=fast"], "optimizer.lr='fast': must be a number > 0"),
    (["optimizer.weight_decay=-1"], "optimizer.weight_decay=-1: must be >= 0"),
    (["dataset.batch_size=0"], "dataset.batch_size=0: must be >= 1"),
    (["dataset.batch_size=abc"], "dataset.batch_size='abc': must be an integer >= 1"),
    (["dataset.eval_batch_size=-4"], "dataset.eval_batch_size=-4: must be >= 1"),
    (["dataset.num_workers=-1"], "dataset.num_workers=-1: must be >= 0"),
    (["trainer.max_epochs=0"], "trainer.max_epochs=0: must be >= 1"),
    (["trainer.max_epochs=2.5"], "trainer.max_epochs=2.5: must be an integer >= 1"),
    (["trainer.precision=8"], "trainer.precision=8: allowed: 64-true, 32-true"),
    (["seed=-1"], "seed=-1: must be >= 0"),
    (
        ["backbone.variant=resnet19"],
        "backbone.variant='resnet19': not a resnet variant; allowed: resnet18, resnet34, resnet50, resnet101, resnet152",
    ),
    (
        ["backbone=vgg", "backbone.stem=imagenet", "dataset.image_size=24"],
        "dataset.image_size=24 is too small for backbone vgg11_bn",
    ),
    (["backbone.stem=tiny"], "backbone.stem='tiny': allowed: auto, small, imagenet"),
    (["attention.bank.components=0"], "attention.bank.components=0: must be >= 1 or null (raw bank)"),
    (["attention.bank.num_images=-5"], "attention.bank.num_images=-5: must be >= 1 or null (all)"),
    (["attention.classifier.kind=deep"], "attention.classifier.kind='deep': allowed: linear, mlp"),
    (["attention.classifier.kernel_size=2"], "attention.classifier.kernel_size=2: must be an odd integer >= 1"),
    (["attention.temperature=0"], "attention.temperature=0: must be > 0"),
    (["attention.mode=add"], "attention.mode='add': allowed: multiply, residual"),
    (["monitor.metric=val/accuracy"], "monitor.metric='val/accuracy': this run logs"),
    (["monitor.metric=val/map_auroc", "attention=none"], "monitor.metric='val/map_auroc': this run logs"),
    (["monitor.mode=maximum"], "monitor.mode='maximum': allowed: min, max"),
    (["ckpt_path=nowhere/last.ckpt"], "ckpt_path='nowhere/last.ckpt': no such file"),
    (["loss.nonfinite=ignore"], "loss.nonfinite='ignore': allowed: stop, skip"),
    (["loss.label_smoothing=1.5"], "loss.label_smoothing=1.5: must be a number in [0, 1)"),
    (
        ["optimizer.fused=true", "optimizer.foreach=true"],
        "optimizer.foreach=True: not together with optimizer.fused=true",
    ),
    (["optimizer.fused=yes"], "optimizer.fused='yes': must be true, false or null"),
    (["performance.device_memory_share=1.5"], "performance.device_memory_share=1.5: must be a number in (0, 1]"),
    (["performance.compile_mode=turbo"], "performance.compile_mode='turbo': allowed: default, reduce-overhead"),
    (["performance.data_on_device=maybe"], "performance.data_on_device='maybe': must be true or false"),
    (["performance.pin_memory=maybe"], "performance.pin_memory='maybe': must be true or false"),
    (["performance.fused_optimizer=yes"], "performance.fused_optimizer='yes': must be true, false or null"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_INPUTS, ids=[" ".join(o) for o, _ in BAD_INPUTS])
def test_bad_input_is_refused_naming_key_value_and_what_is_allowed(overrides, message):
    with pytest.raises(ConfigError) as error:
        validate_train_config(compose_config(overrides))
    text = str(error.value)
    assert text.startswith("Invalid config: ") and "\n" not in text
    assert text.removeprefix("Invalid config: ").startswith(message), text


def test_bad_input_on_the_command_line_stops_before_any_directory_exists(tmp_path):
    result = run_script("train.py", "optimizer.lr=-0.1", f"paths.log_dir={tmp_path / 'outputs'}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "Error: Invalid config: optimizer.lr=-0.1: must be > 0"
    assert not (tmp_path / "outputs").exists()


def test_unknown_group_choice_keeps_hydras_message_listing_the_options():
    result = run_script("train.py", "backbone=resnet9000")
    assert result.returncode != 0
    assert "Could not find 'backbone/resnet9000'" in result.stderr
    assert "Available options in 'backbone'" in result.stderr and "densenet" in result.stderr


def test_a_bank_larger_than_the_training_set_stops_before_training(tiny_config, tmp_path):
    with pytest.raises(
        ValueError, match=r"attention.bank.components=200: at most min\(images x channels, H x W\) = 80 with these"
    ):
        train(tiny_config("attention.bank.components=200"))
    assert not (tmp_path / "run" / "checkpoints").exists()


# -- interruption -------------------------------------------------------------------------
def start_training(run_dir: Path, *overrides: str) -> subprocess.Popen:
    command = [sys.executable, str(ROOT / "train.py"), *overrides, f"hydra.run.dir={run_dir}"]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


RESUMABLE = [
    *TINY_DATA,
    *QUIET,
    "dataset.source.num_train=96",
    "trainer.max_epochs=3",
    "trainer.deterministic=true",
    "trainer.num_sanity_val_steps=0",
    "backbone=vgg",  # dropout: the random state must resume too
]


def test_sigterm_saves_last_checkpoint_and_the_resumed_run_ends_like_an_uninterrupted_one(tmp_path):
    reference = run_script("train.py", *RESUMABLE, f"hydra.run.dir={tmp_path / 'reference'}")
    assert reference.returncode == 0, reference.stderr[-3000:]

    run_dir = tmp_path / "interrupted"
    process = start_training(run_dir, *RESUMABLE)
    first_epoch_checkpoint = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not first_epoch_checkpoint.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert process.poll() is None, "training ended before it could be interrupted"
    time.sleep(0.5)  # into the second epoch
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGTERM
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "interrupted" and status["signal"] == "SIGTERM"
    assert "Interrupted by SIGTERM" in stdout + stderr and "Resume exactly with:" in stdout + stderr
    assert not (run_dir / "metrics.json").exists()
    assert f"ckpt_path={first_epoch_checkpoint}" in status["resume"]
    assert f"hydra.run.dir={run_dir}" in status["resume"]

    resumed = run_script("train.py", *RESUMABLE, f"ckpt_path={first_epoch_checkpoint}", f"hydra.run.dir={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = json.loads((tmp_path / "reference" / "metrics.json").read_text())
    assert json.loads((run_dir / "metrics.json").read_text()) == expected


# -- non-finite loss ----------------------------------------------------------------------
def test_a_non_finite_loss_stops_the_run_naming_the_step(tmp_path):
    run_dir = tmp_path / "nan"
    result = run_script("train.py", *LIMITED, "optimizer=sgd", "optimizer.lr=1e30", f"hydra.run.dir={run_dir}")
    assert result.returncode != 0
    assert "non-finite loss" in result.stderr and "step" in result.stderr
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "failed" and "NonFiniteLossError" in status["error"]
    assert "non-finite loss" in (run_dir / "error.txt").read_text()
    assert not (run_dir / "metrics.json").exists()
    assert (run_dir / ".hydra" / "config.yaml").is_file()  # partial outputs are kept


def test_non_finite_batches_can_be_skipped_instead(tiny_config):
    metrics = train(tiny_config("debug=limit", "optimizer=sgd", "optimizer.lr=1e30", "loss.nonfinite=skip"))
    assert "test/acc" in metrics


# -- sweeps -------------------------------------------------------------------------------
def test_a_failing_job_does_not_stop_the_sweep_and_a_rerun_skips_completed_jobs(tmp_path):
    sweep_dir = tmp_path / "sweep"
    arguments = [
        "-m",
        "optimizer=sgd",
        "optimizer.lr=0.01,1e30",
        *LIMITED,
        "trainer.max_epochs=1",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    first = run_script("train.py", *arguments)
    assert first.returncode != 0  # the sweep reports its failure at the end
    lines = [json.loads(line) for line in (sweep_dir / "sweep_status.jsonl").read_text().splitlines()]
    by_status = {line["status"]: line for line in lines}
    assert set(by_status) == {"completed", "failed"}
    good, bad = Path(by_status["completed"]["run_dir"]), Path(by_status["failed"]["run_dir"])
    assert good.name.startswith("0_optimizer.lr=0.01,") and bad.name.startswith("1_optimizer.lr=1e+30,")
    assert (good / "metrics.json").is_file()
    assert "NonFiniteLossError" in (bad / "error.txt").read_text()
    assert "non-finite loss" in by_status["failed"]["error"]

    summary = run_script("scripts/summarize.py", str(sweep_dir))
    assert summary.returncode == 0, summary.stderr
    report = (sweep_dir / "results.md").read_text()
    assert "failed" in report and bad.name in report

    good_metrics = (good / "metrics.json").read_text()
    again = run_script("train.py", *arguments, "skip_completed=true")
    assert f"Already completed in {good}" in again.stderr + again.stdout
    assert (good / "metrics.json").read_text() == good_metrics
    lines = [json.loads(line) for line in (sweep_dir / "sweep_status.jsonl").read_text().splitlines()]
    assert [line["status"] for line in lines].count("completed") == 2


def test_two_runs_started_together_never_share_a_directory(tmp_path):
    log_dir = tmp_path / "outputs"
    arguments = [*TINY_DATA, *QUIET, "debug=fast_dev_run", f"paths.log_dir={log_dir}"]
    processes = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "train.py"), *arguments],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    for process in processes:
        assert process.wait(timeout=300) == 0, process.stderr.read().decode()[-2000:]
    run_dirs = sorted(path for path in (log_dir / "train").glob("*/*") if path.is_dir())
    assert len(run_dirs) == 2
    for run_dir in run_dirs:
        assert (run_dir / "metrics.json").is_file()


# -- distributed --------------------------------------------------------------------------
def test_two_process_ddp_on_cpu_keeps_one_run_directory_and_one_map(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log_dir = tmp_path / "outputs"
    result = run_script(
        "train.py",
        *LIMITED,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        f"paths.log_dir={log_dir}",
    )
    assert result.returncode == 0, result.stderr[-4000:]
    run_dirs = [path for path in (log_dir / "train").glob("*/*") if path.is_dir()]
    assert len(run_dirs) == 1
    run_dir = run_dirs[0]
    assert (run_dir / "metrics.json").is_file() and (run_dir / "attention_map.npy").is_file()
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    differences = [event.value for event in events.Scalars("attention/rank_map_max_difference")]
    assert differences and max(differences) == 0.0


def test_the_error_page_lists_every_bad_input_the_tests_cover():
    page = (ROOT / "docs" / "errors.md").read_text()
    for overrides, message in BAD_INPUTS:
        assert f"`{' '.join(overrides)}`" in page
        assert message in page, message
