"""The command line: quick answers, the config tree, installed commands, provenance of every run."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import QUIET, ROOT, TINY_DATA, run_script
from rich.console import Console

from gsa_exp.training.callbacks import LossProgressBar, RichLossProgressBar, progress_bar
from gsa_exp.training.console import config_tree
from gsa_exp.training.train import train

HEAVY = ("torch", "torchvision", "pytorch_lightning", "torchmetrics")


def imported_modules(*args: str) -> tuple[set[str], subprocess.CompletedProcess]:
    """Top-level modules a command imports (Python's -X importtime report), and its result."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", str(ROOT / "train.py"), *args], capture_output=True, text=True, timeout=300
    )
    names = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    return names, done


@pytest.mark.parametrize(
    ("args", "answer"),
    [
        (["--help"], "== Configuration groups =="),
        (["optimizer.lr=-1"], "Error: Invalid config: optimizer.lr=-1: must be > 0"),
        (["dataset.batch_size=0"], "Error: Invalid config: dataset.batch_size=0: must be >= 1"),
        (["performance.compile=maybe"], "Error: Invalid config: performance.compile='maybe': must be true or false"),
    ],
)
def test_help_and_config_errors_answer_without_loading_torch_or_lightning(args, answer):
    names, done = imported_modules(*args)
    assert answer in done.stdout + done.stderr
    assert "hydra" in names and not names & set(HEAVY), sorted(names & set(HEAVY))


def test_the_config_tree_shows_every_group_with_resolved_values(tiny_config):
    cfg = tiny_config("backbone=vgg")
    buffer = io.StringIO()
    Console(file=buffer, width=120, color_system=None).print(config_tree(cfg))
    text = buffer.getvalue()
    first_lines = [line for line in text.splitlines() if line.startswith(("├──", "└──"))]
    assert [line[4:].strip() for line in first_lines[:7]] == [
        "dataset",
        "backbone",
        "attention",
        "optimizer",
        "scheduler",
        "trainer",
        "performance",
    ]
    assert "name: vgg" in text and "num_train: 80" in text and "${" not in text  # resolved


def test_a_run_prints_its_config_unless_told_not_to(tmp_path):
    shown = run_script("train.py", *TINY_DATA, "debug=fast_dev_run", f"hydra.run.dir={tmp_path / 'shown'}")
    hidden = run_script("train.py", *TINY_DATA, *QUIET, "debug=fast_dev_run", f"hydra.run.dir={tmp_path / 'hidden'}")
    assert shown.returncode == 0 and hidden.returncode == 0, shown.stderr[-2000:] + hidden.stderr[-2000:]
    assert "├── backbone" in shown.stdout and "├── backbone" not in hidden.stdout


def test_every_run_records_its_provenance(tiny_config, tmp_path):
    train(tiny_config("debug=fast_dev_run"))
    record = json.loads((tmp_path / "run" / "provenance.json").read_text())
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert record["git"]["commit"] == head and isinstance(record["git"]["dirty"], bool)
    assert record["packages"]["gsa-exp"] and record["packages"]["torch"] and record["packages"]["hydra-core"]
    assert record["python"] == sys.version.split()[0] and record["host"]
    assert "gpu" in record  # None without CUDA, the card's name with it


@pytest.mark.parametrize(("style", "kind"), [("tqdm", LossProgressBar), ("rich", RichLossProgressBar)])
def test_progress_bar_styles(style, kind):
    assert isinstance(progress_bar(enabled=True, refresh_rate=5, style=style), kind)
    assert progress_bar(enabled=False, refresh_rate=5, style=style) is None
    with pytest.raises(ValueError, match="^callbacks.progress_bar.style='fancy': allowed: tqdm, rich$"):
        progress_bar(enabled=True, refresh_rate=5, style="fancy")


def installed_command(name: str) -> Path:
    command = Path(sys.executable).parent / name
    if not command.exists():
        pytest.fail(f"{name} is not installed next to {sys.executable}: run make install")
    return command


def test_installed_commands_run_from_any_directory_with_their_own_configs(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "GSA_EXP_ROOT"}
    train_run = subprocess.run(
        [str(installed_command("gsa-train")), *TINY_DATA, *QUIET, "debug=fast_dev_run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert train_run.returncode == 0, train_run.stderr[-3000:]
    run_dirs = list((tmp_path / "outputs" / "train").glob("*/*"))
    assert len(run_dirs) == 1 and (run_dirs[0] / "metrics.json").is_file()  # outputs/ of the launch directory
    for command, expected in (("gsa-eval", "ckpt_path"), ("gsa-predict", "ckpt_path"), ("gsa-summarize", "SWEEP_DIR")):
        helped = subprocess.run(
            [str(installed_command(command)), "--help"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert helped.returncode == 0 and expected in helped.stdout, command
