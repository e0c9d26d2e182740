"""Named experiments: the paper grid (composition and the smoke run) and the Optuna search."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from conftest import CONF, QUIET, TINY_DATA, compose_config, run_script


def test_paper_grid_composes_with_the_medmnist_protocol():
    cfg = compose_config(["experiment=paper_grid"])
    assert cfg.trainer.max_epochs == 100 and cfg.optimizer.lr == 0.001
    assert cfg.scheduler._target_.endswith("MultiStepLR") and list(cfg.scheduler.milestones) == [50, 75]
    assert cfg.monitor.metric == "val/auroc"


def sweep_grid(experiment: str) -> dict[str, list[str]]:
    path = Path(compose_config([]).paths.root_dir, "conf", "experiment", f"{experiment}.yaml")
    params = yaml.safe_load(path.read_text())["hydra"]["sweeper"]["params"]
    return {key: str(value).split(",") for key, value in params.items()}


def test_paper_grid_sweeps_three_data_sets_four_backbones_two_attentions_three_seeds():
    grid = sweep_grid("paper_grid")
    assert grid == {
        "dataset": ["pneumoniamnist", "octmnist", "fer2013"],
        "backbone": ["googlenet", "vgg", "resnet", "densenet"],
        "attention": ["none", "global"],
        "seed": ["0", "1", "2"],
    }
    smoke = sweep_grid("paper_grid_smoke")
    assert smoke["dataset"] == [f"smoke/{name}" for name in grid["dataset"]]
    assert {key: smoke[key] for key in ("backbone", "attention", "seed")} == {
        key: grid[key] for key in ("backbone", "attention", "seed")
    }


@pytest.mark.parametrize("standin", ["pneumoniamnist", "octmnist", "fer2013"])
def test_smoke_standins_are_tiny_generated_sets_named_after_the_real_ones(standin):
    stand_in = compose_config([f"dataset=smoke/{standin}"]).dataset
    assert stand_in.name == f"{standin}-standin"
    assert stand_in.source.name == "synthetic" and stand_in.image_size == 16


@pytest.mark.slow
def test_paper_grid_smoke_runs_end_to_end_and_its_summary_has_every_cell(tmp_path):
    sweep_dir = tmp_path / "grid"
    result = run_script("train.py", "-m", "experiment=paper_grid_smoke", f"hydra.sweep.dir={sweep_dir}", timeout=3000)
    assert result.returncode == 0, result.stderr[-4000:]
    statuses = [json.loads(line)["status"] for line in (sweep_dir / "sweep_status.jsonl").read_text().splitlines()]
    assert statuses == ["completed"] * 72
    checkpoints = sorted(path.name for path in sweep_dir.glob("*/checkpoints/*"))
    assert checkpoints == ["best.ckpt"] * 72  # weights only, no last.ckpt: the grid stays a few GB
    summary = run_script("scripts/summarize.py", str(sweep_dir))
    assert summary.returncode == 0, summary.stderr
    rows = list(csv.DictReader((sweep_dir / "results.csv").open()))
    cells = {(r["dataset"], r["backbone"], r["attention"]) for r in rows if r["metric"] == "test/acc" and r["n"] == "3"}
    assert len(cells) == 3 * 4 * 2
    report = (sweep_dir / "results.md").read_text()
    assert "Job directories: 72 (72 finished, 0 failed, 0 unfinished)" in report
    tables, statistics = report.split("## Statistics: global vs none")
    table_rows = [line for line in tables.splitlines() if line.startswith("| ") and not line.startswith("| backbone")]
    assert table_rows and all("(n=3)" in row and "—" not in row and "failed" not in row for row in table_rows)
    statistics_rows = [
        line.split(" | ") for line in statistics.splitlines() if line.startswith("| ") and "| 3 |" in line
    ]
    assert len(statistics_rows) == 4 * 3 * 2  # backbone x data set x (test/acc, test/auroc), each over 3 seed pairs
    assert all(row[4] != "—" and row[7] != "—" for row in statistics_rows)  # Δ over seeds and over test images
    assert report.rstrip().endswith("None: every job finished with finite metrics.")
    assert (sweep_dir / "results.png").read_bytes()[:4] == b"\x89PNG"


def test_optuna_search_runs_three_trials_and_survives_a_failing_one(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="the optuna extra is not installed")
    sweep_dir = tmp_path / "search"
    result = run_script(
        "train.py",
        "-m",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=3",
        "optimizer=sgd",
        "optimizer.lr=choice(0.01,1e30)",  # 1e30 makes a trial's loss non-finite
        *TINY_DATA,
        *QUIET,
        "debug=limit",
        "trainer.max_epochs=1",
        f"hydra.sweep.dir={sweep_dir}",
    )
    assert result.returncode == 0, result.stderr[-4000:]
    records = [json.loads(line) for line in (sweep_dir / "sweep_status.jsonl").read_text().splitlines()]
    assert len(records) == 3
    for record in records:
        lr = next(o for o in record["overrides"] if o.startswith("optimizer.lr="))
        assert record["status"] == ("failed" if lr == "optimizer.lr=1e+30" else "completed"), record
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert results["best_params"]["optimizer.lr"] == 0.01
    assert 0.0 <= results["best_value"] <= 1.0


def test_optuna_study_kept_in_sqlite_continues_when_the_search_is_run_again(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="the optuna extra is not installed")
    import optuna

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    common = [
        "-m",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=2",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=kept",
        *TINY_DATA,
        *QUIET,
        "debug=limit",
        "trainer.max_epochs=1",
    ]
    for part in ("first", "second"):
        result = run_script("train.py", *common, f"hydra.sweep.dir={tmp_path / part}")
        assert result.returncode == 0, result.stderr[-4000:]
    trials = optuna.load_study(study_name="kept", storage=storage).trials
    assert len(trials) == 4  # the second search added two trials to the first two
    assert all(trial.state == optuna.trial.TrialState.COMPLETE for trial in trials)
    assert all(0.0 <= trial.value <= 1.0 for trial in trials)


def test_the_parallel_launcher_runs_sweep_jobs_at_once_each_in_its_own_directory(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="the parallel extra is not installed")
    sweep_dir = tmp_path / "sweep"
    result = run_script(
        "train.py",
        "-m",
        "hydra/launcher=parallel",
        "hydra.launcher.n_jobs=2",
        "seed=0,1",
        *TINY_DATA,
        *QUIET,
        "debug=fast_dev_run",
        f"hydra.sweep.dir={sweep_dir}",
    )
    assert result.returncode == 0, result.stderr[-4000:]
    records = [json.loads(line) for line in (sweep_dir / "sweep_status.jsonl").read_text().splitlines()]
    assert sorted(record["status"] for record in records) == ["completed", "completed"]
    run_dirs = {Path(record["run_dir"]) for record in records}
    assert len(run_dirs) == 2 and all((run_dir / "metrics.json").is_file() for run_dir in run_dirs)


def test_medmnist_plus_sweeps_sets_resolutions_models_schemes_and_attention():
    grid = sweep_grid("medmnist_plus")
    assert len(grid["dataset.source.flag"]) == 12 and grid["dataset.source.size"] == ["28", "64", "128", "224"]
    assert grid["scheme"] == ["end_to_end", "linear_probe", "knn"] and grid["attention"] == ["none", "global"]
    medmnist_plus_models = sorted(path.stem for path in (CONF / "backbone" / "medmnist_plus").glob("*.yaml"))
    assert sorted(grid["backbone"]) == [f"medmnist_plus/{name}" for name in medmnist_plus_models]
    assert len(medmnist_plus_models) == 9  # MedMNIST+'s 10 models but AlexNet, which timm lacks
    assert all((CONF / "backbone" / f"{choice}.yaml").is_file() for choice in grid["backbone"])
    cfg = compose_config(["experiment=medmnist_plus", "scheme=knn"])
    assert cfg.backbone.pretrained and cfg.backbone.stem == "imagenet" and cfg.dataset.image_size == 224
    assert cfg.dataset.source.as_rgb and list(cfg.dataset.normalize.mean) == [0.485, 0.456, 0.406]
    assert cfg.scheme.k == 11 and cfg.optimizer.lr == 0.0001 and cfg.monitor.metric == "val/auroc"
    smoke = sweep_grid("medmnist_plus_smoke")
    assert {key: smoke[key] for key in ("scheme", "attention")} == {key: grid[key] for key in ("scheme", "attention")}


@pytest.mark.slow
def test_medmnist_plus_smoke_runs_every_scheme_and_its_summary_groups_by_scheme_and_resolution(tmp_path):
    sweep_dir = tmp_path / "grid"
    result = run_script(
        "train.py", "-m", "experiment=medmnist_plus_smoke", f"hydra.sweep.dir={sweep_dir}", timeout=1200
    )
    assert result.returncode == 0, result.stderr[-4000:]
    statuses = [json.loads(line)["status"] for line in (sweep_dir / "sweep_status.jsonl").read_text().splitlines()]
    assert statuses == ["completed"] * 12
    knn_runs = sorted(sweep_dir.glob("*scheme=knn*"))
    assert len(knn_runs) == 4 and all("test/loss" not in json.loads((r / "metrics.json").read_text()) for r in knn_runs)
    summary = run_script("scripts/summarize.py", str(sweep_dir))
    assert summary.returncode == 0, summary.stderr
    rows = list(csv.DictReader((sweep_dir / "results.csv").open()))
    groups = {(r["scheme"], r["resolution"]) for r in rows if r["metric"] == "test/acc"}
    assert groups == {(s, f"{px} px") for s in ("end_to_end", "linear_probe", "knn") for px in (28, 32)}
    report = (sweep_dir / "results.md").read_text()
    assert "Job directories: 12 (12 finished, 0 failed, 0 unfinished)" in report
    table = [line for line in report.split("## test/acc")[1].split("##")[0].splitlines() if line.startswith("| resnet")]
    assert [line.split(" | ")[0] for line in table] == [
        f"| resnet [{s}, {px} px]" for s in ("end_to_end", "linear_probe", "knn") for px in (28, 32)
    ]
    assert all("(n=1)" in line and "—" not in line for line in table)  # none, global and Δ in each group
