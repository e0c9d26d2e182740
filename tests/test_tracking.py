"""Every logger records the run: MLflow (a SQLite store read back with its client) beside TensorBoard + CSV
(logger=all) with the learning rate, W&B offline (the run directory it leaves for ``wandb sync``); a missing
tracking package is refused before work starts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import QUIET, TINY_DATA, compose_config, run_script
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gsa_exp.config.validation import ConfigError, require_package, validate_loggers, validate_train_config
from gsa_exp.tracking import run_files
from gsa_exp.training.train import train

TWO_EPOCHS = [*TINY_DATA, *QUIET, "debug=limit", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1"]
ONE_EPOCH = [*TWO_EPOCHS, "trainer.max_epochs=1"]
ABSENT = "gsa_exp_no_such_package"


@pytest.fixture(scope="module")
def mlflow_run(tmp_path_factory) -> tuple[Path, Path]:
    """One real ``python train.py logger=[all,mlflow]`` run (TensorBoard, CSV and MLflow) into a store of its own:
    (run directory, store directory)."""
    store = tmp_path_factory.mktemp("mlflow")
    run_dir = store / "run"
    loggers = "logger=[all,mlflow]"
    result = run_script("train.py", *TWO_EPOCHS, loggers, f"paths.log_dir={store}", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-4000:]
    return run_dir, store


def stored_run(store: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    experiment = client.get_experiment_by_name("train")  # logger.mlflow.experiment_name: the task's name
    (run,) = client.search_runs([experiment.experiment_id])
    return client, experiment, run


def artifact_paths(client, run_id: str, folder: str | None = None) -> list[str]:
    paths = []
    for item in client.list_artifacts(run_id, folder):
        paths += artifact_paths(client, run_id, item.path) if item.is_dir else [item.path]
    return paths


@pytest.mark.slow  # one train.py run of about 25 s (the fixture), shared
def test_mlflow_keeps_params_metrics_and_the_run_name_in_its_sqlite_store(mlflow_run):
    run_dir, store = mlflow_run
    _, experiment, run = stored_run(store)
    assert Path(experiment.artifact_location) == store / "mlruns"
    assert run.info.run_name == run_dir.name and run.info.status == "FINISHED"
    assert run.data.tags["run_dir"] == str(run_dir)
    params = run.data.params  # the compared hyper-parameters, TensorBoard's HPARAMS keys
    assert params["backbone.name"] == "resnet" and params["attention.name"] == "global"
    assert params["optimizer.name"] == "adam" and params["seed"] == "0" and params["trainer.max_epochs"] == "2"
    assert params["dataset.source.num_train"] == "80"
    written = json.loads((run_dir / "metrics.json").read_text())
    for key in ("val/auroc", "val/acc", "test/acc", "test/auroc", "test/map_auroc"):
        assert run.data.metrics[key] == pytest.approx(written[key], rel=1e-6), key  # the final values
    assert run.data.metrics["lr-Adam/attention"] == pytest.approx(10 * run.data.metrics["lr-Adam/backbone"])


@pytest.mark.slow  # one train.py run of about 25 s (the fixture), shared
def test_mlflow_keeps_the_run_files_and_the_map_images_as_artifacts(mlflow_run):
    run_dir, store = mlflow_run
    client, _, run = stored_run(store)
    paths = artifact_paths(client, run.info.run_id)
    files = {"metrics.json", "predictions_val.csv", "predictions_test.csv", "targets_test.csv", "attention_map.png"}
    assert files | {"attention_map.npy", "provenance.json", ".hydra/config.yaml"} <= set(paths)
    assert not [path for path in paths if path.startswith("checkpoints") or path in ("status.json", "train.log")]
    downloaded = Path(client.download_artifacts(run.info.run_id, "metrics.json", str(store)))
    assert json.loads(downloaded.read_text()) == json.loads((run_dir / "metrics.json").read_text())
    images = [path for path in paths if path.startswith("images/") and path.endswith(".png")]
    maps = [path for path in images if path.startswith("images/attention~map+step+")]
    assert len(maps) == 2  # one per validation epoch of the fit
    assert any(path.startswith("images/attention~overlays+") for path in images)
    assert len([path for path in images if path.startswith("images/val~confusion_matrix+")]) == 2
    png = Path(client.download_artifacts(run.info.run_id, maps[0], str(store)))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def offline_run(run_dir: Path) -> Path:
    (directory,) = (run_dir / "wandb").glob("offline-run-*")
    return directory


def test_wandb_writes_an_offline_run_with_metrics_images_config_and_files(tmp_path):
    train(compose_config([*ONE_EPOCH, "logger=wandb"], output_dir=tmp_path / "job"))
    directory = offline_run(tmp_path / "job")
    (records,) = directory.glob("run-*.wandb")  # what `wandb sync` uploads
    content = records.read_bytes()
    for key in (b"val/auroc", b"test/acc", b"lr-Adam/backbone", b"backbone.name", b"dataset.source.num_train"):
        assert key in content, key  # metrics and hyper-parameters are in the run's records
    media = directory / "files" / "media" / "images"
    assert len(list((media / "attention").glob("map_*.png"))) == 1  # one validation epoch
    assert list((media / "attention").glob("overlays_*.png")) and list((media / "test").glob("confusion_matrix_*.png"))
    for name in ("metrics.json", "predictions_test.csv", "targets_val.csv", "attention_map.png"):
        assert (directory / "files" / name).read_bytes() == (tmp_path / "job" / name).read_bytes(), name


def test_each_job_of_one_process_gets_its_own_wandb_run(tmp_path):
    """A basic-launcher sweep runs its jobs in one process: the run of one job ends with it."""
    from pytorch_lightning.loggers import WandbLogger

    from gsa_exp.tracking import log_image, tracked_run

    for job in ("0_seed=0", "1_seed=1"):
        logger = WandbLogger(offline=True, save_dir=str(tmp_path / job), project="gsa-exp", name=job)
        with tracked_run([logger]):
            log_image([logger], "attention/map", np.full((1, 8, 8), 0.5, dtype=np.float32), 3, "CHW")
    first, second = (offline_run(tmp_path / job) for job in ("0_seed=0", "1_seed=1"))
    assert first.name.rsplit("-", 1)[1] != second.name.rsplit("-", 1)[1]  # two run ids
    assert b"1_seed=1" in next(second.glob("run-*.wandb")).read_bytes()
    assert b"1_seed=1" not in next(first.glob("run-*.wandb")).read_bytes()
    assert list((second / "files" / "media" / "images" / "attention").glob("map_*.png"))


@pytest.mark.slow  # one train.py run of about 25 s (the fixture), shared
def test_logger_all_beside_mlflow_writes_tensorboard_and_csv_with_the_learning_rate(mlflow_run):
    run_dir, _ = mlflow_run
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert len(events.Images("attention/map")) == 2 and len(events.Images("val/confusion_matrix")) == 2
    written = json.loads((run_dir / "metrics.json").read_text())
    assert events.Scalars("test/acc")[-1].value == pytest.approx(written["test/acc"])
    rates = [event.value for event in events.Scalars("lr-Adam/backbone")]  # each epoch: the cosine schedule's step
    assert rates == [pytest.approx(1e-3), pytest.approx(5e-4)]  # T_max = max_epochs = 2
    header, *rows = (run_dir / "csv" / "metrics.csv").read_text().splitlines()
    columns = header.split(",")
    assert {"lr-Adam/backbone", "lr-Adam/attention", "val/auroc", "test/acc"} <= set(columns)
    logged = [row.split(",")[columns.index("lr-Adam/attention")] for row in rows]
    assert [float(rate) for rate in logged if rate] == [pytest.approx(1e-2), pytest.approx(5e-3)]  # lr_multiplier 10
    assert (run_dir / "csv" / "hparams.yaml").is_file()


def test_a_missing_tracking_package_is_named_with_its_install_command():
    with pytest.raises(ConfigError) as refused:
        require_package("logger=mlflow", ABSENT)
    assert (
        str(refused.value)
        == f"Invalid config: logger=mlflow: needs the {ABSENT} package: pip install 'gsa-exp[tracking]'"
    )
    require_package("logger=mlflow", "mlflow")  # installed: nothing to say


@pytest.mark.parametrize("choice", ["mlflow", "wandb"])
def test_a_logger_without_its_package_is_refused_before_work(choice):
    cfg = compose_config([f"logger={choice}"])
    validate_loggers(cfg)  # installed here (the dev extra)
    absent = {"MLFlowLogger": ABSENT, "WandbLogger": ABSENT}
    with pytest.raises(ConfigError, match=rf"^Invalid config: logger={choice}: needs the {ABSENT} package: pip "):
        validate_loggers(cfg, absent)


def test_the_learning_rate_monitor_without_a_logger_is_refused_before_work():
    with pytest.raises(ConfigError) as refused:
        validate_train_config(compose_config(["~logger"]))
    assert str(refused.value).startswith("Invalid config: ~logger: callbacks.lr_monitor needs a logger; keep one")
    validate_train_config(compose_config(["~logger", "~callbacks.lr_monitor"]))


def test_run_files_are_the_top_level_files_and_the_config_but_not_status_or_log(tmp_path):
    for name in ("metrics.json", "status.json", "train.log", "checkpoints/best.ckpt", ".hydra/config.yaml"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert [path.relative_to(tmp_path).as_posix() for path in run_files(tmp_path)] == [
        "metrics.json",
        ".hydra/config.yaml",
    ]
