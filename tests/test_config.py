"""Every choice of every config group composes and instantiates; the resolvers keep runs apart."""

from __future__ import annotations

import inspect
import multiprocessing
import re
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from conftest import CONF, TINY_DATA, compose_config, dataset_choices, run_script
from hydra.utils import get_class
from omegaconf import OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

from gsa_exp.attention import attention_class
from gsa_exp.backbones import list_backbones
from gsa_exp.config.resolvers import MAX_NAME_LENGTH, claim_directory, job_directory, readable_name
from gsa_exp.data import ArrayDataModule, get_source, list_sources
from gsa_exp.data.splits import MULTICLASS, DataInfo
from gsa_exp.training.builders import build_callbacks, build_datamodule, build_loggers, build_model, build_trainer

INFO = DataInfo(task=MULTICLASS, num_classes=2, channels=1, image_size=32, num_train=80, label_names=["a", "b"])


def choices(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF / group).glob("*.yaml"))


def test_the_groups_the_issue_names_exist():
    assert {"densenet", "googlenet", "resnet", "vgg"} <= set(choices("backbone"))
    assert choices("backbone") == sorted(list_backbones())
    assert {"none", "global"} <= set(choices("attention"))
    assert {"default", "cpu", "gpu", "ddp"} <= set(choices("trainer"))
    assert {"adam", "sgd"} <= set(choices("optimizer"))
    assert {"tensorboard", "csv"} <= set(choices("logger"))
    assert {"fast_dev_run", "limit", "overfit"} <= set(choices("debug"))
    for group in ("dataset", "callbacks", "paths", "hydra", "experiment", "scheduler"):
        assert choices(group), f"conf/{group}/ is empty"


def has_key(cfg, dotted: str) -> bool:
    node = cfg
    for part in dotted.split("."):
        if part not in node:
            return False
        node = node[part]
    return True


def test_keys_scripts_rely_on_are_present():
    cfg = compose_config([])
    for key in (
        "seed",
        "dataset.image_size",
        "dataset.batch_size",
        "trainer.max_epochs",
        "optimizer.lr",
        "attention.bank.num_images",
        "attention.bank.components",
        "monitor.metric",
    ):
        assert has_key(cfg, key), key
    assert not has_key(cfg, "attention.bank.no_such_key")
    assert compose_config(["ckpt_path=x.ckpt"], config_name="eval").ckpt_path == "x.ckpt"


def test_every_trainer_has_speed_settings_of_its_name_in_training_and_evaluation():
    assert set(choices("trainer")) <= set(choices("performance"))  # train.yaml, eval.yaml: performance: ${trainer}
    for trainer, pinned in (("default", False), ("gpu", True)):
        cfg = compose_config(["ckpt_path=x.ckpt", "dataset=synthetic", f"trainer={trainer}"], config_name="eval")
        assert cfg.dataset.pin_memory is pinned  # a chosen data set reads performance.pin_memory


@pytest.mark.parametrize("choice", choices("backbone"))
def test_backbone_choice_builds_a_model(choice):
    model = build_model(compose_config([f"backbone={choice}", "attention=none"]), INFO)
    assert model.hparams.backbone["name"] == choice
    logits = model.eval()(torch.zeros(2, 1, 32, 32))
    assert logits.shape == (2, 2)


@pytest.mark.parametrize("choice", choices("attention"))
def test_attention_choice_builds(choice):
    model = build_model(compose_config([f"attention={choice}"]), INFO)
    assert type(model.attention) is attention_class(choice)
    assert model.hparams.attention["name"] == choice


@pytest.mark.parametrize("optimizer", choices("optimizer"))
@pytest.mark.parametrize("scheduler", [None, *choices("scheduler")])
def test_optimizer_and_scheduler_choices_instantiate(optimizer, scheduler):
    overrides = [f"optimizer={optimizer}"] + ([f"scheduler={scheduler}"] if scheduler else [])
    cfg = compose_config(overrides)
    model = build_model(cfg, INFO)
    configured = model.configure_optimizers()
    optimizer_object = configured["optimizer"] if isinstance(configured, dict) else configured
    assert type(optimizer_object).__name__.lower() == optimizer
    assert optimizer_object.param_groups[0]["lr"] == cfg.optimizer.lr
    if scheduler == "none":  # the command line's constant rate: a bare optimizer
        assert not isinstance(configured, dict)
    elif scheduler:
        assert configured["lr_scheduler"]["interval"] == "epoch"
        assert configured["lr_scheduler"]["monitor"] == "val/auroc"


@pytest.mark.parametrize("group", ["optimizer", "scheduler"])
def test_optimizer_and_scheduler_nodes_hold_only_constructor_arguments(group):
    for choice in choices(group):
        node = compose_config([f"{group}={choice}"])[group]
        if choice == "none":
            assert not node  # a constant rate: nothing to build
            continue
        assert node._partial_ is True, choice
        parameters = inspect.signature(get_class(node._target_)).parameters
        assert set(node) - {"_target_", "_partial_"} <= set(parameters) - {"params", "optimizer"}, choice


def test_the_attention_parameter_group_learns_at_its_multiplier():
    cfg = compose_config(["attention=global", "attention.lr_multiplier=4.0", "optimizer.lr=0.002"])
    model = build_model(cfg, INFO)
    backbone, attention = model.configure_optimizers()["optimizer"].param_groups
    assert backbone["lr"] == 0.002 and attention["lr"] == pytest.approx(0.008)
    assert {id(p) for p in attention["params"]} == {id(p) for p in model.attention.parameters()}
    assert {id(p) for p in backbone["params"]} == {id(p) for p in model.backbone.parameters()}


def test_the_scheduler_interval_reaches_lightning():
    cfg = compose_config(["scheduler=plateau", "scheduler_interval=step"])
    configured = build_model(cfg, INFO).configure_optimizers()["lr_scheduler"]
    assert configured["interval"] == "step" and configured["monitor"] == "val/auroc"
    assert type(configured["scheduler"]).__name__ == "ReduceLROnPlateau" and configured["scheduler"].mode == "max"


def test_multistep_milestones_follow_max_epochs():
    cfg = compose_config(["scheduler=multistep", "trainer.max_epochs=100"])
    scheduler = build_model(cfg, INFO).configure_optimizers()["lr_scheduler"]["scheduler"]
    assert sorted(scheduler.milestones) == [50, 75]


@pytest.mark.parametrize("choice", choices("trainer"))
def test_trainer_choice_instantiates(choice, tmp_path):
    # Instantiated on the CPU so the test runs anywhere; the choice's other settings stay.
    cfg = compose_config([f"trainer={choice}", "trainer.accelerator=cpu"], output_dir=tmp_path)
    trainer = build_trainer(cfg, callbacks=[], loggers=False)
    assert isinstance(trainer, pl.Trainer)
    assert trainer.max_epochs == cfg.trainer.max_epochs
    if choice == "gpu":
        assert cfg.trainer.accelerator == "cpu" and compose_config(["trainer=gpu"]).trainer.precision == "bf16-mixed"
    if choice == "ddp":
        assert trainer.num_devices == 2 and type(trainer.strategy).__name__ == "DDPStrategy"


@pytest.mark.parametrize("choice", choices("logger"))
def test_logger_choice_instantiates(choice, tmp_path):
    loggers = build_loggers(compose_config([f"logger={choice}", f"paths.log_dir={tmp_path}"], output_dir=tmp_path))
    names = {type(logger).__name__ for logger in loggers}
    expected = {"tensorboard": {"TensorBoardLogger"}, "csv": {"CSVLogger"}, "all": {"TensorBoardLogger", "CSVLogger"}}
    expected |= {"mlflow": {"MLFlowLogger"}, "wandb": {"WandbLogger"}}  # the tracking extra's
    assert names == expected[choice]


@pytest.mark.parametrize("choice", choices("callbacks"))
def test_callbacks_choice_instantiates(choice, tmp_path):
    callbacks = build_callbacks(compose_config([f"callbacks={choice}"], output_dir=tmp_path))
    names = {type(callback).__name__ for callback in callbacks}
    assert {"BestAndLastCheckpoint", "AttentionMapMonitor", "RunHeartbeat"} <= names
    assert any(isinstance(callback, ModelCheckpoint) for callback in callbacks)  # Lightning finds the best model
    assert ("EarlyStopping" in names) == (choice == "early_stopping")


@pytest.mark.parametrize("choice", dataset_choices())
def test_dataset_choice_instantiates(choice):
    """Every conf/dataset/ option, presets and smoke/* included, builds a registered source.

    Construction reads no file; loading real files is tested in test_real_datasets.py."""
    cfg = compose_config([f"dataset={choice}"])
    assert cfg.dataset.source._target_ == "gsa_exp.data.create_source" and cfg.dataset.source.name in list_sources()
    datamodule = build_datamodule(cfg.dataset)
    assert datamodule.batch_size == cfg.dataset.batch_size
    assert datamodule.image_size == cfg.dataset.image_size
    assert type(datamodule.source) is get_source(cfg.dataset.source.name)
    assert (datamodule.name, datamodule.root) == (cfg.dataset.name, cfg.dataset.root)
    parameters = inspect.signature(ArrayDataModule).parameters
    assert set(cfg.dataset) - {"_target_"} <= set(parameters)  # constructor arguments only


def test_dataset_yamls_state_only_what_differs_from_the_loader_base():
    base = OmegaConf.to_container(OmegaConf.load(CONF / "dataset_base" / "loader.yaml"))
    for choice in dataset_choices():
        own = OmegaConf.to_container(OmegaConf.load(CONF / "dataset" / f"{choice}.yaml"))  # interpolations as written
        assert own["defaults"][-1] == "_self_", choice  # the base (directly or through another data set) comes first
        repeated = [key for key, value in own.items() if key in base and value == base[key]]
        assert not repeated, f"dataset/{choice}.yaml repeats the base's {repeated}"
        assert set(base) <= set(compose_config([f"dataset={choice}"]).dataset), choice


def test_synthetic_choice_loads():
    datamodule = build_datamodule(compose_config(["dataset=synthetic", *TINY_DATA]).dataset)
    datamodule.setup("fit")
    assert datamodule.info.num_train == 80


@pytest.mark.parametrize("choice", choices("debug"))
def test_debug_choice_composes_into_trainer_settings(choice, tmp_path):
    cfg = compose_config([f"debug={choice}"], output_dir=tmp_path)
    trainer = build_trainer(cfg, callbacks=[], loggers=False)
    if choice == "fast_dev_run":
        assert trainer.fast_dev_run
    elif choice == "limit":
        assert trainer.limit_train_batches == 4 and trainer.max_epochs == 2
    else:
        assert trainer.overfit_batches == 2


@pytest.mark.parametrize("choice", choices("experiment"))
def test_experiment_choice_composes(choice):
    cfg = compose_config([f"experiment={choice}"])
    assert cfg.backbone.name and cfg.attention.name


def test_help_lists_every_group_and_its_choices():
    result = run_script("train.py", "--help")
    assert result.returncode == 0, result.stderr
    assert f"backbone: {', '.join(sorted(list_backbones()))}" in result.stdout
    assert "attention: " in result.stdout and "global" in result.stdout and "none" in result.stdout
    for group in ("dataset", "trainer", "optimizer", "logger", "callbacks", "debug", "experiment"):
        assert f"\n{group}: " in result.stdout


# -- run directories ----------------------------------------------------------------------
def test_readable_names_are_single_safe_path_components():
    name = readable_name("backbone=vgg,dataset.root=/data/my set")
    assert name == "backbone=vgg,dataset.root=_data_my_set"
    assert job_directory(3, "attention=global,backbone=resnet") == "3_attention=global,backbone=resnet"
    assert job_directory(0, "") == "job0"


def _claim(base: str, queue) -> None:
    queue.put(claim_directory(base, "seed=0"))


def test_runs_started_at_the_same_moment_get_different_directories(tmp_path):
    base = str(tmp_path / "2026-01-01" / "12-00-00")
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_claim, args=(base, queue)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    claimed = sorted(queue.get(timeout=5) for _ in workers)
    assert len(set(claimed)) == 4
    assert claimed[0] == base + "_seed=0"
    assert all(Path(path).is_dir() for path in claimed)


def test_swept_overrides_lead_the_job_directory_name(tmp_path):
    (tmp_path / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    params:\n      attention: none,global\n"
        "  overrides:\n    task:\n    - dataset.source.num_train=80\n    - optimizer.lr=0.01,0.1\n    - x=[1,2]\n"
    )
    overrides = "attention=global,dataset.source.num_train=80,optimizer.lr=0.1,x=[1,2]"
    assert job_directory(4, overrides, str(tmp_path)) == (
        "4_attention=global,optimizer.lr=0.1,x=_1,2_,dataset.source.num_train=80"
    )
    assert job_directory(4, overrides, str(tmp_path / "elsewhere")).startswith("4_attention=global,x=_1,2_,dataset")


# A paper-grid job as a user launches it: the grid's swept groups, a data root, a few short keys, and the
# long ++trainer.* overrides of a quick check. Hydra's override_dirname sorts them ('+' first).
GRID_JOB = (
    "++trainer.limit_test_batches=2,++trainer.limit_train_batches=4,++trainer.limit_val_batches=2,"
    "++trainer.num_sanity_val_steps=0,attention=global,backbone=densenet,dataset.root=/data/medmnist/v2,"
    "dataset=pneumoniamnist,optimizer.lr=0.001,seed=2,trainer.max_epochs=3"
)


def test_job_directories_keep_every_value_whole_group_choices_first(tmp_path):
    (tmp_path / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    params:\n      dataset: pneumoniamnist,octmnist\n"
        "      backbone: googlenet,densenet\n      attention: none,global\n      seed: 0,1,2\n"
    )
    name = job_directory(17, GRID_JOB, str(tmp_path))
    assert name.startswith("17_dataset=pneumoniamnist,backbone=densenet,attention=global,seed=2,")
    overrides = name.removeprefix("17_").split(",")
    *kept, marker = overrides
    assert len(name) - len("17_") <= MAX_NAME_LENGTH and re.fullmatch(r"\+\d+more-[0-9a-f]{6}", marker)
    safe_items = [item.replace("/", "_") for item in GRID_JOB.split(",")]
    assert all(item in safe_items for item in kept)  # whole items only: no value cut in the middle
    assert kept[4] == "dataset.root=_data_medmnist_v2"  # keys inside a group follow the choices, ++ keys last
    assert len(kept) + int(marker[1 : marker.index("m")]) == len(safe_items)  # the marker counts what was dropped
    # jobs that differ only in a dropped item still get different names; the same job, the same name
    other = GRID_JOB.replace("limit_val_batches=2", "limit_val_batches=3")
    assert job_directory(17, other, str(tmp_path)) != name == job_directory(17, GRID_JOB, str(tmp_path))
    # the ++trainer.* items come last: with room for all, they end the name
    assert readable_name("++trainer.max_epochs=1,backbone=vgg,trainer.precision=32") == (
        "backbone=vgg,trainer.precision=32,++trainer.max_epochs=1"
    )


def test_a_single_item_longer_than_the_limit_is_dropped_whole(tmp_path):
    long_root = "dataset.root=/" + "deep/" * 40
    name = readable_name(f"backbone=vgg,{long_root}")
    assert re.fullmatch(r"backbone=vgg,\+1more-[0-9a-f]{6}", name)
    assert re.fullmatch(r"\+1more-[0-9a-f]{6}", readable_name(long_root))


def test_slurm_launcher_config_composes_onto_submitit():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the slurm extra is not installed")
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.gpus_per_node == 1 and launcher.tasks_per_node == 1 and launcher.timeout_min == 1440
