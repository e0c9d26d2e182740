"""tune.lr_find: Lightning's range test before training; its suggestion is the rate the run trains at."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import CONF, QUIET, TINY_DATA, compose_config
from omegaconf import OmegaConf
from PIL import Image

from gsa_exp.config.options import TuneOptions
from gsa_exp.config.validation import ConfigError, validate_train_config
from gsa_exp.training.train import train

# 13 steps in the one epoch: the search's 13 steps (the fewest a suggestion needs) fit in the data the run trains on
SEARCHED = [
    *TINY_DATA,
    *QUIET,
    "dataset.batch_size=6",
    "trainer.max_epochs=1",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.num_sanity_val_steps=0",
    "tune.lr_find=true",
    "tune.num_training=13",
    "tune.min_lr=1e-5",
    "tune.max_lr=1.0",
    "tune.early_stop_threshold=null",  # all 13 steps, whatever the loss does at the top of the range
    "callbacks.ema.enabled=true",  # weight averaging copies the model after the search's steps: it must copy
]


@pytest.fixture(scope="module")
def searched_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("searched") / "run"
    train(compose_config(SEARCHED, run))
    return run


def test_the_suggestion_is_the_rate_the_run_trains_at_and_the_plot_is_written(searched_run):
    record = json.loads((searched_run / "lr_find.json").read_text())
    suggestion = record["suggestion"]
    assert 1e-5 <= suggestion <= 1.0 and record["configured_lr"] == compose_config([]).optimizer.lr
    assert len(record["lr"]) == len(record["loss"]) == 13
    assert record["lr"] == sorted(record["lr"]) and suggestion in record["lr"]
    with Image.open(searched_run / "lr_find.png") as picture:  # a whole PNG, decoded to the last pixel
        assert picture.format == "PNG"
        picture.load()
        assert min(picture.size) > 100

    checkpoint = torch.load(searched_run / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["hyper_parameters"]["optimizer"]["lr"] == suggestion
    assert checkpoint["gsa_exp_config"]["optimizer"]["lr"] == suggestion
    backbone, attention = checkpoint["optimizer_states"][0]["param_groups"]
    multiplier = compose_config([]).attention.lr_multiplier
    assert backbone["initial_lr"] == suggestion  # the cosine schedule starts from the suggestion
    assert attention["initial_lr"] == pytest.approx(suggestion * multiplier)
    assert not list(searched_run.glob(".lr_find_*.ckpt"))  # Lightning's temporary checkpoint is gone


@pytest.mark.slow
def test_a_resume_takes_the_rate_of_the_earlier_search_without_searching_again(searched_run, caplog):
    before = (searched_run / "lr_find.json").read_bytes()
    last = searched_run / "checkpoints" / "last.ckpt"
    with caplog.at_level("INFO"):
        train(compose_config([*SEARCHED, "trainer.max_epochs=2", f"ckpt_path={last}"], searched_run))
    assert "Resuming: learning rate" in caplog.text
    assert (searched_run / "lr_find.json").read_bytes() == before
    suggestion = json.loads(before)["suggestion"]
    resumed = torch.load(last, weights_only=False)
    assert resumed["epoch"] == 2 - 1 and resumed["hyper_parameters"]["optimizer"]["lr"] == suggestion


def test_the_tune_group_declares_its_yaml_keys_and_searches_only_when_asked():
    assert set(OmegaConf.load(CONF / "train.yaml").tune) == set(TuneOptions.__dataclass_fields__)
    assert compose_config([]).tune.lr_find is False


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainer.fast_dev_run=true"], "tune.lr_find=True: not with trainer.fast_dev_run"),
        (["trainer=ddp"], "tune.lr_find=True: not with trainer.strategy=ddp_spawn trainer.devices=2"),
        (["tune.min_lr=0.1", "tune.max_lr=0.01"], "tune.min_lr=0.1: must be below tune.max_lr=0.01"),
        (["tune.num_training=5"], "tune.num_training=5: must be >= 13"),
        (["tune.mode=cubic"], "tune.mode='cubic': allowed: exponential, linear"),
        (["scheme=knn"], "tune.lr_find=True: not with scheme=knn (no optimizer step"),
    ],
)
def test_combinations_that_cannot_search_are_refused_before_work(overrides, message):
    with pytest.raises(ConfigError) as refused:
        validate_train_config(compose_config(["tune.lr_find=true", *overrides]))
    assert str(refused.value).startswith(f"Invalid config: {message}")


def test_a_resume_into_a_directory_without_an_earlier_search_is_refused(tmp_path):
    checkpoint = tmp_path / "elsewhere.ckpt"
    checkpoint.write_bytes(b"")
    with pytest.raises(ConfigError, match=r"^Invalid config: tune.lr_find=True: not when resuming from .*elsewhere"):
        train(compose_config([*SEARCHED, f"ckpt_path={checkpoint}"], tmp_path / "run"))
    assert not (tmp_path / "run" / "status.json").exists()  # refused before the run began
