"""A run's life in status.json, the one definition of completed, and what a relaunch finds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from conftest import ROOT
from fabricated_sweeps import make_job

from gsa_exp import durable
from gsa_exp.reporting.jobs import KILLED, UNFINISHED, load_sweep
from gsa_exp.reporting.render import render_markdown
from gsa_exp.reporting.tables import summarize
from gsa_exp.run_state import completion, life_state, running_record, why_killed
from gsa_exp.training.resilience import launch_program
from gsa_exp.training.run_record import auto_resume_enabled, begin_run, own_last_checkpoint


def dead_pid() -> int:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(finished.stdout)


def hours_ago(hours: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(hours=hours)).isoformat(timespec="seconds")


def test_a_running_status_of_this_live_process_is_running():
    assert why_killed(running_record()) is None and life_state(running_record()) == "running"


def test_a_running_status_whose_process_is_gone_is_killed():
    status = {**running_record(), "pid": dead_pid()}
    assert "is gone" in why_killed(status) and life_state(status) == KILLED


def test_a_reused_pid_does_not_keep_a_dead_run_alive():
    status = {**running_record(), "process_started": -1}  # this pid, but not the process that wrote the record
    assert "belongs to another process" in why_killed(status)


def test_a_stale_heartbeat_means_killed_even_from_another_host():
    fresh = {"status": "running", "pid": 1, "host": "node-elsewhere", "heartbeat_at": hours_ago(0.5)}
    assert why_killed(fresh) is None
    assert "no heartbeat for 2.0 h" in why_killed({**fresh, "heartbeat_at": hours_ago(2)})
    slow_epochs = {**fresh, "heartbeat_at": hours_ago(2), "epoch_seconds": 3600}  # stale after three epochs
    assert why_killed(slow_epochs) is None
    assert life_state({"status": "completed", "heartbeat_at": hours_ago(50)}) == "completed"


@pytest.mark.parametrize(
    ("files", "reason", "warned"),
    [
        ({}, "no status.json", False),
        ({"metrics.json": '{"test/acc": 0.9}'}, "no status.json", False),
        ({"status.json": '{"status": "failed"}', "metrics.json": "{}"}, "status 'failed'", False),
        ({"status.json": '{"status": "completed"}'}, "status 'completed' but no metrics.json", False),
        (
            {"status.json": '{"status": "completed"}', "metrics.json": '{"test/acc": 0.'},
            "metrics.json unreadable",
            True,
        ),
        ({"status.json": '{"status": "completed"}', "metrics.json": ""}, "metrics.json unreadable", True),
        ({"status.json": '{"status": "completed"}', "metrics.json": "[1]"}, "expected a JSON object", True),
    ],
)
def test_completed_needs_a_completed_status_and_a_readable_metrics_file(tmp_path, files, reason, warned):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    done = completion(tmp_path)
    assert done.metrics is None and reason in done.reason
    assert bool(done.warning) == warned


def test_a_completed_run_gives_its_metrics(tmp_path):
    (tmp_path / "status.json").write_text('{"status": "completed"}')
    (tmp_path / "metrics.json").write_text('{"test/acc": 0.9}')
    assert completion(tmp_path).metrics == {"test/acc": 0.9}


def test_starting_a_run_clears_the_old_status_metrics_and_dead_temp_files(tmp_path):
    (tmp_path / "status.json").write_text('{"status": "completed"}')
    for name in ("metrics.json", "error.txt", "predictions_test.csv", "targets_val.csv", "attention_map.npy"):
        (tmp_path / name).write_text("old")
    leftover = tmp_path / "checkpoints" / f".best.ckpt{durable.TEMP_MARK}{dead_pid()}-1@{durable.hostname()}"
    leftover.parent.mkdir()
    leftover.write_bytes(b"half")
    begin_run(tmp_path)
    assert sorted(path.name for path in tmp_path.rglob("*") if path.is_file()) == ["attention_map.npy", "status.json"]
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["status"] == "running" and status["pid"] == os.getpid() and status["host"] == durable.hostname()
    assert completion(tmp_path).metrics is None


def test_auto_resume_is_on_for_skip_completed_relaunches_and_slurm_jobs(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert not auto_resume_enabled("auto", skip_completed=False)
    assert auto_resume_enabled("auto", skip_completed=True)
    assert auto_resume_enabled(True, skip_completed=False) and not auto_resume_enabled(False, skip_completed=True)
    monkeypatch.setenv("SLURM_JOB_ID", "1234")
    monkeypatch.setenv("SLURM_JOB_NAME", "gsa-grid")
    assert auto_resume_enabled("auto", skip_completed=False)
    monkeypatch.setenv("SLURM_JOB_NAME", "bash")  # an interactive allocation is not a requeued batch job
    assert not auto_resume_enabled("auto", skip_completed=False)


def test_only_a_whole_last_checkpoint_is_resumed_from(tmp_path, caplog):
    assert own_last_checkpoint(tmp_path) is None
    path = tmp_path / "checkpoints" / "last.ckpt"
    path.parent.mkdir()
    import torch

    torch.save({"epoch": 1}, path)
    assert own_last_checkpoint(tmp_path) == path
    path.write_bytes(path.read_bytes()[:100])  # cut, as a copy from another filesystem leaves it
    assert own_last_checkpoint(tmp_path) is None
    assert "is not a whole checkpoint" in caplog.text


def test_the_resume_command_names_the_program_as_it_was_started(tmp_path, monkeypatch):
    assert launch_program("train.py") == ["python", "train.py"]
    installed = tmp_path / "bin" / "gsa-train"
    installed.parent.mkdir()
    installed.write_text("#!/bin/sh\n")
    installed.chmod(0o755)
    assert launch_program(str(installed)) == [str(installed)]  # not on PATH: its path
    monkeypatch.setenv("PATH", f"{installed.parent}{os.pathsep}{os.environ['PATH']}")
    assert launch_program(str(installed)) == ["gsa-train"]


# -- the sweep summary ----------------------------------------------------------------------------------
def test_the_summary_shows_a_dead_running_job_as_killed_and_not_finished(tmp_path):
    sweep = tmp_path / "sweep"
    make_job(sweep, 0, "resnet", "none", 0, {"test/acc": 0.8, "test/auroc": 0.9})
    killed = {"status": "running", "pid": dead_pid(), "host": durable.hostname(), "heartbeat_at": hours_ago(0)}
    make_job(sweep, 1, "resnet", "none", 1, files={"status.json": json.dumps(killed)})
    stale = {"status": "running", "pid": 7, "host": "elsewhere", "heartbeat_at": hours_ago(5)}
    make_job(sweep, 2, "resnet", "none", 2, files={"status.json": json.dumps(stale), "metrics.json": "{}"})
    alive = {**running_record()}
    make_job(sweep, 3, "resnet", "none", 3, files={"status.json": json.dumps(alive)})
    jobs = load_sweep(sweep).jobs
    assert [job.state for job in jobs] == ["finished", KILLED, KILLED, UNFINISHED]
    assert "is gone" in jobs[1].reason and "skip_completed=true" in jobs[1].reason
    assert "no heartbeat" in jobs[2].reason and "metrics.json was written before the end" in jobs[2].reason
    markdown = render_markdown(summarize(load_sweep(sweep)))
    assert "Job directories: 4 (1 finished, 0 failed, 2 killed, 1 unfinished)." in markdown
    assert "| resnet | 0.800 (n=1, 3 unfinished) |" in markdown


def test_the_summary_command_warns_on_stderr_about_an_unreadable_metrics_file(tmp_path):
    sweep = tmp_path / "sweep"
    make_job(sweep, 0, "resnet", "none", 0, {"test/acc": 0.8, "test/auroc": 0.9})
    damaged = make_job(sweep, 1, "resnet", "none", 1, files={"status.json": '{"status": "completed"}'})
    (damaged / "metrics.json").write_text('{"test/acc": 0.7')
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "summarize.py"), str(sweep)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert (
        f"summarize.py: warning: {damaged.name}: {damaged / 'metrics.json'}: metrics.json unreadable" in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert durable.TEMP_MARK not in "".join(path.name for path in sweep.iterdir())
