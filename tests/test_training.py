"""End to end: fit, outputs on disk, eval.py on the checkpoint, multirun, seeds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import QUIET, TINY_DATA, compose_config, run_script
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from gsa_exp.backbones import list_backbones
from gsa_exp.training.evaluate import evaluate
from gsa_exp.training.sweep_maps import collect_maps
from gsa_exp.training.train import train

METRICS = ("acc", "bal_acc", "auroc", "f1", "loss")
LIMITED = [*TINY_DATA, *QUIET, "debug=limit"]


def read_json(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def read_metrics(run_dir: Path) -> dict[str, float]:
    """metrics.json's scalars; its one nested entry, test/confusion_matrix, is checked on its own."""
    return {key: value for key, value in read_json(run_dir).items() if not isinstance(value, dict)}


def assert_metrics_in_range(metrics: dict[str, float], stages=("val", "test")) -> None:
    for stage in stages:
        for name in METRICS[:-1]:
            assert 0.0 <= metrics[f"{stage}/{name}"] <= 1.0, f"{stage}/{name}"
        assert metrics[f"{stage}/loss"] >= 0.0


@pytest.mark.parametrize("attention", ["none", "global"])
@pytest.mark.parametrize("backbone", list_backbones())
def test_fast_dev_run_trains_every_backbone_with_every_attention(tiny_config, backbone, attention, tmp_path):
    cfg = tiny_config(f"backbone={backbone}", f"attention={attention}", "debug=fast_dev_run")
    metrics = train(cfg)
    assert_metrics_in_range(metrics)
    written = read_metrics(tmp_path / "run")
    assert written == pytest.approx(metrics, nan_ok=True)
    assert ("test/map_auroc" in metrics) == (attention == "global")


def tensorboard_events(run_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(
        str(run_dir / "tensorboard"), size_guidance={"images": 0, "scalars": 0, "tensors": 0}
    )
    accumulator.Reload()
    return accumulator


def hparams_session(accumulator: EventAccumulator) -> tuple[dict, list[str]]:
    content = accumulator.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    hparams = {key: value for key, value in start.session_start_info.hparams.items()}
    metric_tags = [info.name.tag for info in experiment.experiment.metric_infos]
    return hparams, metric_tags


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """One real ``python train.py`` run, as a user starts it (shared by the tests below)."""
    run_dir = tmp_path_factory.mktemp("train") / "run"
    result = run_script("train.py", *LIMITED, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"Run directory: {run_dir}" in result.stdout + result.stderr
    return run_dir


def test_run_directory_holds_every_output(trained_run):
    assert (trained_run / ".hydra" / "config.yaml").is_file()
    assert (trained_run / "checkpoints" / "best.ckpt").is_file()
    assert (trained_run / "checkpoints" / "last.ckpt").is_file()
    metrics = read_metrics(trained_run)
    assert_metrics_in_range(metrics)
    assert 0.0 <= metrics["val/map_auroc"] <= 1.0 and 0.0 <= metrics["test/map_auroc"] <= 1.0
    attention_map = np.load(trained_run / "attention_map.npy")
    assert attention_map.shape == (32, 32) and attention_map.dtype == np.float32
    assert attention_map.min() > 0 and attention_map.max() < 1
    assert (trained_run / "attention_map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tensorboard_has_scalars_map_images_and_hparams_with_final_metrics(trained_run):
    events = tensorboard_events(trained_run)
    tags = events.Tags()
    for tag in ("train/loss_epoch", "val/acc", "val/auroc", "val/map_auroc", "test/acc", "test/auroc"):
        assert tag in tags["scalars"], tag
    assert "hp_metric" not in tags["scalars"]
    assert len(events.Images("attention/map")) == 2  # one per validation epoch
    hparams, metric_tags = hparams_session(events)
    assert hparams["backbone.name"].string_value == "resnet"
    assert hparams["attention.name"].string_value == "global"
    assert hparams["optimizer.name"].string_value == "adam"  # the option chosen: the node holds only arguments
    assert hparams["scheduler.name"].string_value == "cosine"
    assert hparams["scheduler_interval"].string_value == "epoch"
    assert not [key for key in hparams if key.endswith(("_target_", "_partial_"))]
    assert hparams["seed"].number_value == 0
    assert {"test/acc", "test/auroc", "val/acc"} <= set(metric_tags)
    final_test_acc = events.Scalars("test/acc")[-1].value
    assert final_test_acc == pytest.approx(read_metrics(trained_run)["test/acc"])


def test_per_class_recall_and_the_confusion_matrix_match_the_written_predictions(trained_run):
    metrics = read_json(trained_run)
    scores = np.loadtxt(trained_run / "predictions_test.csv", delimiter=",")[:, 1:]
    labels = np.loadtxt(trained_run / "targets_test.csv", delimiter=",", dtype=int)[:, 1]
    predicted = scores.argmax(axis=1)
    names = ["no_lesion_in_region", "lesion_in_region"]  # the label names, as TensorBoard tags
    for stage in ("val", "test"):
        assert sorted(key for key in metrics if key.startswith(f"{stage}/recall/")) == sorted(
            f"{stage}/recall/{name}" for name in names
        )
    for index, name in enumerate(names):
        recall = metrics[f"test/recall/{name}"]
        assert 0.0 <= recall <= 1.0
        assert recall == pytest.approx((predicted[labels == index] == index).mean())
    matrix = metrics["test/confusion_matrix"]
    assert matrix["labels"] == ["no lesion in region", "lesion in region"]
    assert matrix["rows"] == "true label" and matrix["columns"] == "predicted label"
    assert matrix["counts"] == [
        [int(((labels == true) & (predicted == guess)).sum()) for guess in (0, 1)] for true in (0, 1)
    ]
    assert sum(map(sum, matrix["counts"])) == len(labels) == 32


def test_the_learning_rate_of_each_parameter_group_reaches_tensorboard(trained_run):
    events = tensorboard_events(trained_run)  # callbacks.lr_monitor, at each epoch start (scheduler_interval=epoch)
    assert [event.value for event in events.Scalars("lr-Adam/backbone")] == [pytest.approx(1e-3), pytest.approx(5e-4)]
    assert [event.value for event in events.Scalars("lr-Adam/attention")] == [pytest.approx(1e-2), pytest.approx(5e-3)]


def test_tensorboard_shows_the_confusion_matrix_every_validation_epoch_and_after_testing(trained_run):
    events = tensorboard_events(trained_run)
    assert len(events.Images("val/confusion_matrix")) == 2  # one per validation epoch of the fit
    assert len(events.Images("test/confusion_matrix")) == 1
    assert "test/recall/lesion_in_region" in events.Tags()["scalars"]


def test_eval_on_the_best_checkpoint_reproduces_the_test_metrics(trained_run, tmp_path):
    eval_dir = tmp_path / "eval"
    checkpoint = trained_run / "checkpoints" / "best.ckpt"
    result = run_script("eval.py", f"ckpt_path={checkpoint}", f"hydra.run.dir={eval_dir}", *QUIET)
    assert result.returncode == 0, result.stderr[-4000:]
    trained, evaluated = read_metrics(trained_run), read_metrics(eval_dir)
    for key, value in evaluated.items():
        assert key.startswith("test/")
        assert value == pytest.approx(trained[key], abs=1e-6), key
    assert np.array_equal(np.load(eval_dir / "attention_map.npy"), np.load(trained_run / "attention_map.npy"))
    assert read_json(eval_dir)["test/confusion_matrix"] == read_json(trained_run)["test/confusion_matrix"]


def test_weights_only_checkpoints_still_evaluate(tiny_config, tmp_path):
    """save_weights_only skips callback hooks: the run config must still reach the checkpoint."""
    trained = train(
        tiny_config(
            "debug=limit",
            "callbacks.model_checkpoint.save_weights_only=true",
            "callbacks.model_checkpoint.save_last=false",
        )
    )
    checkpoints = tmp_path / "run" / "checkpoints"
    assert sorted(path.name for path in checkpoints.iterdir()) == ["best.ckpt"]
    assert "optimizer_states" not in torch.load(checkpoints / "best.ckpt", weights_only=False)
    evaluated = evaluate(compose_config([f"ckpt_path={checkpoints / 'best.ckpt'}", *QUIET], tmp_path / "eval", "eval"))
    for key, value in evaluated.items():
        assert value == pytest.approx(trained[key], abs=1e-6), key


def test_eval_refuses_a_missing_checkpoint(tmp_path):
    result = run_script("eval.py", "ckpt_path=nowhere/best.ckpt", f"hydra.run.dir={tmp_path / 'eval'}", cwd=tmp_path)
    assert result.returncode != 0
    assert result.returncode == 2
    assert f"no such file (looked at {tmp_path / 'nowhere' / 'best.ckpt'}" in result.stderr


def test_eval_refuses_a_checkpoint_not_written_by_train(tmp_path):
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ValueError, match="foreign.ckpt was not written by gsa-exp's train.py"):
        evaluate(compose_config([f"ckpt_path={foreign}", *QUIET], tmp_path / "eval", "eval"))
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_same_seed_gives_identical_metrics_and_map(tiny_config, tmp_path):
    first = train(tiny_config("debug=limit", "seed=0"))
    first_map = np.load(tmp_path / "run" / "attention_map.npy")
    second = train(tiny_config("debug=limit", "seed=0"))
    assert first == second
    assert np.array_equal(first_map, np.load(tmp_path / "run" / "attention_map.npy"))
    other = train(tiny_config("debug=limit", "seed=1"))
    assert other != first
    assert not np.array_equal(first_map, np.load(tmp_path / "run" / "attention_map.npy"))


def test_multirun_gives_each_job_its_own_readable_directory(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = run_script(
        "train.py",
        "-m",
        "attention=none,global",
        "seed=0",
        *LIMITED,
        "trainer.max_epochs=1",
        f"hydra.sweep.dir={sweep_dir}",
    )
    assert result.returncode == 0, result.stderr[-4000:]
    jobs = sorted(path.name for path in sweep_dir.iterdir() if path.is_dir())
    assert len(jobs) == 2
    assert jobs[0].startswith("0_attention=none,seed=0,dataset.batch_size=16,")  # swept, top-level keys, the rest
    assert jobs[1].startswith("1_attention=global,seed=0,dataset.batch_size=16,")
    for job in jobs:
        metrics = read_metrics(sweep_dir / job)
        assert_metrics_in_range(metrics)
        assert ("val/map_auroc" in metrics) == ("attention=global" in job)
    grid = collect_maps(sweep_dir)  # the sweep's maps from the jobs' own .hydra/config.yaml
    assert (grid.rows, grid.columns, grid.skipped, grid.missing) == (["resnet"], ["synthetic"], [jobs[0]], [])
    assert np.array_equal(grid.cells[("resnet", "synthetic")].shown, np.load(sweep_dir / jobs[1] / "attention_map.npy"))
