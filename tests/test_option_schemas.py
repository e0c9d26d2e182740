"""Option schemas: each option's type declared once, its YAML holding the default, one check for both."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import pytest
from conftest import CONF, TINY_DATA, array_datamodule, compose_config, dataset_choices
from hydra.utils import instantiate
from omegaconf import OmegaConf

from gsa_exp.config import options
from gsa_exp.config.validation import (
    ConfigError,
    check_group,
    validate_eval_config,
    validate_predict_config,
    validate_train_config,
)
from gsa_exp.data.datamodule import ArrayDataModule
from gsa_exp.data.files import DataError
from gsa_exp.errors import OptionError
from gsa_exp.option_schema import (
    AtLeast,
    ExistingFile,
    InRange,
    NullMeans,
    OneOf,
    Required,
    check_options,
    rules,
)
from gsa_exp.options.data import LoaderOptions
from gsa_exp.training.builders import build_datamodule, configure_batches

SCHEMAS = [
    *options.TRAIN_GROUPS.values(),
    options.EvalRunOptions,
    options.PredictOptions,
    options.ExportOptions,
    LoaderOptions,
]


def fields(schema: type) -> set[str]:
    return {field.name for field in dataclasses.fields(schema)}


def yaml_keys(path: Path) -> set[str]:
    return {key for key in OmegaConf.load(path) if key not in ("defaults", "_target_", "_partial_")}


# -- a schema and its YAML name the same options -------------------------------------------------
@pytest.mark.parametrize("choice", sorted(path.stem for path in (CONF / "performance").glob("*.yaml")))
def test_every_performance_option_composes_exactly_the_declared_keys(choice):
    cfg = compose_config([f"performance={choice}"])
    assert set(cfg.performance) == fields(options.PerformanceOptions)


def test_the_loss_and_monitor_groups_hold_exactly_the_declared_keys():
    cfg = compose_config([])
    assert set(cfg.loss) == fields(options.LossOptions)
    assert set(cfg.monitor) == fields(options.MonitorOptions)
    assert fields(options.RunOptions) <= set(cfg)


def test_predict_yaml_holds_every_declared_option():
    assert fields(options.PredictOptions) <= yaml_keys(CONF / "predict.yaml")
    assert fields(options.EvalRunOptions) <= yaml_keys(CONF / "eval.yaml")
    assert fields(options.ExportOptions) <= yaml_keys(CONF / "export.yaml")


@pytest.mark.parametrize("group", ["trainer", "optimizer"])
def test_every_option_of_a_constructor_group_has_the_declared_keys(group):
    schema = {"trainer": options.TrainerOptions, "optimizer": options.OptimizerOptions}[group]
    for path in sorted((CONF / group).glob("*.yaml")):
        assert fields(schema) <= set(compose_config([f"{group}={path.stem}"])[group]), path.name


def test_the_loader_schema_names_constructor_arguments_whose_defaults_are_in_the_base_config():
    assert fields(LoaderOptions) <= set(inspect.signature(ArrayDataModule).parameters)
    assert fields(LoaderOptions) <= yaml_keys(CONF / "dataset_base" / "loader.yaml")


@pytest.mark.parametrize("dataset", dataset_choices())
def test_every_data_set_passes_the_loader_schema_as_shipped(dataset):
    cfg = compose_config([f"dataset={dataset}"])
    check_group(cfg, "dataset", LoaderOptions)  # raises on a refused value


def test_every_schema_field_has_a_rule_the_check_understands():
    for schema in SCHEMAS:
        for name, rule in rules(schema).items():
            assert rule.kind in (bool, int, float, str, object), f"{schema.__name__}.{name}: {rule.kind}"


# -- the one check: its messages ------------------------------------------------------------------
@dataclass(frozen=True)
class Example:
    flag: bool
    maybe: Annotated[bool | None, NullMeans("the library's choice")]
    count: Annotated[int, AtLeast(1)]
    seed: Annotated[int | None, AtLeast(0)]
    rate: Annotated[float, AtLeast(0, strict=True)]
    share: Annotated[float, InRange(0, 1, "(]")]
    mode: Annotated[str, OneOf(("min", "max"), also=("maximum-legacy",))]
    label: str
    path: Annotated[str | None, ExistingFile()]
    needed: Annotated[str | None, Required("give one: needed=<x>")]


GOOD = dict(flag=True, maybe=None, count=1, seed=None, rate=0.1, share=1, mode="max", label="x", path=None, needed="y")


def refused(**changes) -> str:
    with pytest.raises(OptionError) as error:
        check_options(Example, {**GOOD, **changes})
    return str(error.value)


def test_accepted_values_pass_including_null_where_declared_and_unadvertised_spellings():
    check_options(Example, GOOD)
    check_options(Example, {**GOOD, "maybe": False, "seed": 0, "mode": "maximum-legacy", "share": 0.5})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(flag="yes"), "flag='yes': must be true or false"),
        (dict(flag=None), "flag=None: must be true or false"),
        (dict(maybe=1), "maybe=1: must be true, false or null (the library's choice)"),
        (dict(count=0), "count=0: must be >= 1"),
        (dict(count=2.5), "count=2.5: must be an integer >= 1"),
        (dict(count=True), "count=True: must be an integer >= 1"),
        (dict(seed=-1), "seed=-1: must be >= 0 or null"),
        (dict(rate=0), "rate=0: must be > 0"),
        (dict(rate="fast"), "rate='fast': must be a number > 0"),
        (dict(rate=float("nan")), "rate=nan: must be a number > 0"),
        (dict(rate=float("inf")), "rate=inf: must be a number > 0"),
        (dict(share=0), "share=0: must be a number in (0, 1]"),
        (dict(share=1.5), "share=1.5: must be a number in (0, 1]"),
        (dict(mode="maximum"), "mode='maximum': allowed: min, max"),
        (dict(label=3), "label=3: must be a str"),
        (dict(path="nowhere.ckpt"), "path='nowhere.ckpt': no such file (looked at "),
        (dict(needed=None), "needed=None: give one: needed=<x>"),
        (dict(needed=""), "needed='': give one: needed=<x>"),
    ],
)
def test_each_rule_refuses_with_the_value_and_what_is_allowed(changes, message):
    assert refused(**changes).startswith(message)


def test_an_existing_file_is_accepted_relative_to_the_launch_directory(tmp_path, monkeypatch):
    (tmp_path / "best.ckpt").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    check_options(Example, {**GOOD, "path": "best.ckpt"})


def test_the_first_refused_option_in_declaration_order_is_reported():
    assert refused(count=0, flag="yes").startswith("flag=")


def test_a_dollar_in_a_value_survives_in_the_bare_and_the_located_message():
    with pytest.raises(OptionError) as error:
        check_options(Example, {**GOOD, "mode": "$count"})
    assert str(error.value) == "mode='$count': allowed: min, max"
    assert error.value.located({"mode": "monitor.mode"}) == "monitor.mode='$count': allowed: min, max"


def test_present_only_skips_absent_options():
    check_options(Example, {"count": 3, "mode": "min"}, present_only=True)
    with pytest.raises(OptionError, match=r"^count=0: must be >= 1"):
        check_options(Example, {"count": 0}, present_only=True)


# -- the same check, called by the constructor and by the config layer ---------------------------
def test_the_data_module_refuses_its_options_by_their_own_names():
    source = instantiate(compose_config(TINY_DATA).dataset.source)
    with pytest.raises(DataError, match=r"^batch_size=0: must be >= 1$"):
        array_datamodule(source, batch_size=0)
    with pytest.raises(DataError, match=r"^pin_memory='yes': must be true or false$"):
        array_datamodule(source, pin_memory="yes")


def test_through_the_config_layer_the_data_module_options_read_as_config_paths():
    cfg = compose_config([*TINY_DATA, "dataset.num_workers=-2"])
    with pytest.raises(ConfigError, match=r"^Invalid config: dataset.num_workers=-2: must be >= 0$"):
        validate_train_config(cfg)
    with pytest.raises(DataError, match=r"^dataset.num_workers=-2: must be >= 0$"):
        build_datamodule(cfg.dataset)


def test_speed_settings_are_checked_where_they_are_applied_too(tiny_config):
    """The benchmark applies them without a run's validation."""
    cfg = tiny_config("performance.device_memory_share=0")
    datamodule = build_datamodule(cfg.dataset)
    with pytest.raises(ConfigError, match=r"^Invalid config: performance.device_memory_share=0: must be a number in"):
        configure_batches(datamodule, cfg.performance, model=None)  # refused before the model is looked at


def test_eval_checks_the_speed_settings_and_the_data_set_keys_it_is_given(tmp_path):
    checkpoint = tmp_path / "best.ckpt"
    checkpoint.write_bytes(b"")
    base = [f"ckpt_path={checkpoint}"]
    validate_eval_config(compose_config(base, config_name="eval"))
    with pytest.raises(ConfigError, match=r"performance.device_memory_share=2: must be a number in \(0, 1\]"):
        validate_eval_config(compose_config([*base, "performance.device_memory_share=2"], config_name="eval"))
    with pytest.raises(ConfigError, match=r"ckpt_path=None: give the checkpoint to evaluate"):
        validate_eval_config(compose_config([], config_name="eval"))


def test_predict_checks_every_declared_option(tmp_path):
    checkpoint = tmp_path / "best.ckpt"
    checkpoint.write_bytes(b"")
    base = [f"ckpt_path={checkpoint}", f"input={tmp_path}"]
    validate_predict_config(compose_config(base, config_name="predict"))
    with pytest.raises(ConfigError, match=r"^Invalid config: overlays='maybe': must be true or false$"):
        validate_predict_config(compose_config([*base, "overlays=maybe"], config_name="predict"))
    with pytest.raises(ConfigError, match=r"^Invalid config: input=None: required: python predict.py .*>$"):
        validate_predict_config(compose_config(base[:1], config_name="predict"))
    validate_predict_config(compose_config([*base[:1], "input=2024"], config_name="predict"))  # a folder named 2024
    validate_predict_config(compose_config([*base[:1], "input=0"], config_name="predict"))
