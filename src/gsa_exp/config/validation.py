"""Config validation: every check a run needs before it loads data or writes a file.

Each option is checked by its declared schema (``config/options.py``, ``gsa_exp/options/``); the
image size against the backbone by building it on the meta device. This module adds the checks
that relate several keys (per-batch bank and batch size, monitored metric and what the run logs,
two optimizer implementations) and the config paths in the messages. Each failure is one line;
``ConfigError`` is a Hydra "compact" exception, so Hydra prints just that line.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from hydra.errors import CompactHydraException, InstantiationException
from omegaconf import DictConfig, OmegaConf

from gsa_exp.config.options import (
    EXPORT_PACKAGES,
    TRAIN_GROUPS,
    EvalRunOptions,
    ExportOptions,
    FlipOptions,
    PerformanceOptions,
    PredictOptions,
)
from gsa_exp.errors import OptionMessage
from gsa_exp.model.instantiate import instantiate_component
from gsa_exp.model.names import METRIC_NAMES
from gsa_exp.option_schema import check_options
from gsa_exp.options import schema_for
from gsa_exp.options.data import AugmentOptions, LoaderOptions
from gsa_exp.options.scheme import FROZEN_SCHEMES, KNN, SCHEMES


class ConfigError(CompactHydraException, ValueError):
    """A config value that cannot work; the message names the key, the value and what is allowed."""


def _value(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, throw_on_missing=False)


def _fail(key: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"Invalid config: {key}={value!r}: {allowed}")


def check_group(cfg: DictConfig, group: str, schema: type, *, present_only: bool = False) -> None:
    """The options of one group, by its schema (``config/options.py`` or a component's own)."""
    check_node(cfg if not group else _value(cfg, group), group, schema, present_only=present_only)


def check_node(node: DictConfig | None, path: str, schema: type, *, present_only: bool = False) -> None:
    """The options of the config node at ``path`` (its name in the messages), by its schema."""
    prefix = f"{path}." if path else ""
    try:
        check_options(schema, lambda name: None if node is None else _value(node, name), present_only=present_only)
    except OptionMessage as error:
        raise ConfigError(f"Invalid config: {error.located(_Prefixed(prefix))}") from None


class _Prefixed(dict):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def __missing__(self, option: str) -> str:
        return self.prefix + option


# Where the options a component receives from elsewhere (the data set, the speed settings) live in the config.
DATA_OPTIONS = {
    "image_size": "dataset.image_size",
    "in_channels": "dataset.channels",
    "batch_size": "dataset.batch_size",
    "eval_batch_size": "dataset.eval_batch_size",
    "device_memory_share": "performance.device_memory_share",
}


class ConfigPaths(dict):
    """Config paths of a component's options: ``group.option``, or the data set's key for data-given ones."""

    def __init__(self, group: str) -> None:
        super().__init__(DATA_OPTIONS)
        self.group = group

    def __missing__(self, option: str) -> str:
        return f"{self.group}.{option}"


@contextmanager
def option_errors_located() -> Iterator[None]:
    """Errors a component raises while a run works (a batch of the wrong size, images that do not fit
    the map) name their options with the config paths too, as the checks before the run do."""
    try:
        yield
    except Exception as raised:
        error = _builder_error(raised)
        if not isinstance(error, OptionMessage) or error.component is None:
            raise
        located = error.located(ConfigPaths(error.component))
        raise type(error)(OptionMessage.literal(located)) from error


def _builder_error(error: BaseException) -> BaseException:
    """The component's own error inside Hydra's instantiation errors."""
    while isinstance(error, InstantiationException) and error.__cause__ is not None:
        error = error.__cause__
    return error


def _component_error(key: str, error: BaseException) -> ConfigError:
    error = _builder_error(error)
    if isinstance(error, OptionMessage):  # names its options; the config layer says where they live
        return ConfigError(f"Invalid config: {error.located(ConfigPaths(key)).splitlines()[0]}")
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    return ConfigError(f"Invalid config: {key}: {message}")  # another library's error: which group it came from


def _dry_build(cfg: DictConfig, image_size: int, channels: int) -> None:
    """Build backbone and attention on the meta device: every option checked, no memory used; then
    whether the training scheme can use them."""
    import torch  # imported here: the checks before this one answer a mistyped value without loading torch

    with torch.device("meta"):
        try:
            backbone = instantiate_component(cfg.backbone, in_channels=channels, num_classes=2, image_size=image_size)
        except Exception as error:  # the builders' messages already name the key
            raise _component_error("backbone", error) from error
        try:
            attention = instantiate_component(cfg.attention, in_channels=channels, image_size=image_size, num_train=64)
            attention.attach(backbone)  # local attention with placement=stages hooks into the backbone
        except Exception as error:
            raise _component_error("attention", error) from error
    validate_scheme(cfg, backbone, attention)


def validate_scheme(cfg: DictConfig, backbone: Any, attention: Any) -> None:
    """The combinations a training scheme refuses, and why (docs/method.md, "Training schemes")."""
    scheme = _value(cfg, "scheme.name") or "end_to_end"
    if scheme not in FROZEN_SCHEMES:
        return
    if scheme == KNN and not attention.meaningful_untrained:
        key = "attention"  # the variant; for global, the option that made its map a learned one
        if _value(cfg, "attention.name") == "global":
            key = (
                "attention.bank.source"
                if _value(cfg, "attention.bank.source") == "batch"
                else "attention.classifier.init"
            )
        _fail(
            key,
            _value(cfg, f"{key}.name" if key == "attention" else key),
            "scheme=knn takes no gradient step, so this learned map would stay at its uniform start "
            "sigmoid(init_bias) (every pixel weighed alike); use attention=none, or attention=global with "
            "attention.classifier.init=class_contrast (its map fitted from the training split without gradients)",
        )
    if attention.acts_inside_backbone:
        _fail(
            "attention.placement",
            _value(cfg, "attention.placement"),
            f"scheme={scheme} keeps the backbone's features as they are, but blocks between its stages are new "
            "weights inside it that change them (that is adapter tuning, not a probe); use attention.placement=input "
            "(the map before the frozen backbone) or scheme=end_to_end",
        )
    fresh = getattr(backbone, "fresh_modules", ())
    if fresh and _value(cfg, "backbone.pretrained"):
        _fail(
            "backbone.stem",
            _value(cfg, "backbone.stem"),
            f"with scheme={scheme} and backbone.pretrained=true the small stem (stem=auto picks it up to 64 px) "
            f"replaces the pretrained {fresh[0]} by a new convolution that would never train; "
            "set backbone.stem=imagenet, or scheme=end_to_end",
        )
    if scheme == KNN and (
        "ddp" in str(_value(cfg, "trainer.strategy")) or _value(cfg, "trainer.devices") not in (1, "1")
    ):
        _fail(
            "trainer.devices",
            _value(cfg, "trainer.devices"),
            "scheme=knn builds its feature bank in one process (each process would see part of the training "
            "split); use trainer=default or trainer=gpu (one device)",
        )


def scheme_warning(cfg: DictConfig) -> str | None:
    """A frozen-feature scheme on random weights runs (the tests need it offline) but measures random features."""
    scheme = _value(cfg, "scheme.name")
    if scheme in FROZEN_SCHEMES and _value(cfg, "backbone.pretrained") is False:
        return (
            f"scheme={scheme} with backbone.pretrained=false: the frozen features are those of random weights "
            "(a random-feature baseline); MedMNIST+ probes pretrained ones (backbone.pretrained=true)"
        )
    return None


def validate_scheme_name(cfg: DictConfig) -> None:
    """``scheme.name`` set by hand to a scheme that does not exist."""
    name = _value(cfg, "scheme.name")
    if name is not None and name not in SCHEMES:
        _fail("scheme.name", name, f"allowed: {', '.join(SCHEMES)}")


def validate_batch_bank(cfg: DictConfig) -> None:
    """Per-batch global attention (``attention=global_batch``, or ``global`` with ``bank.source=batch``)
    reads its features from batches of one fixed size (a positive integer: the variant checks that)."""
    if _value(cfg, "attention.name") == "global_batch":
        spelling = "attention=global_batch"
    elif _value(cfg, "attention.bank.source") == "batch":
        spelling = "attention.bank.source=batch"
    else:
        return
    fixed, batch = _value(cfg, "attention.bank.batch_size"), _value(cfg, "dataset.batch_size")
    if fixed != batch:
        _fail(
            "attention.bank.batch_size",
            fixed,
            f"must equal dataset.batch_size={batch} with {spelling} (the map is computed from "
            "each batch's own pixels); set both to the same value",
        )
    eval_batch = _value(cfg, "dataset.eval_batch_size")
    if eval_batch % fixed:
        _fail(
            "dataset.eval_batch_size",
            eval_batch,
            f"must be a multiple of attention.bank.batch_size={fixed} with {spelling} "
            f"(evaluation runs in batches of exactly {fixed} images), e.g. {fixed * max(1, eval_batch // fixed)}",
        )


def logged_metrics(cfg: DictConfig) -> set[str]:
    """Every metric a training run logs and a checkpoint callback can monitor (``knn``: no loss, no training metrics)."""
    names = {f"val/{name}" for name in METRIC_NAMES}
    if _value(cfg, "scheme.name") != KNN:
        names |= {"val/loss"} | {f"train/{name}" for name in METRIC_NAMES} | {"train/loss_epoch"}
    synthetic = _value(cfg, "dataset.source.name") == "synthetic"
    if synthetic and _value(cfg, "attention.name") != "none":
        names.add("val/map_auroc")  # only generated data know where their class signal lives
    return names


# Where each component group's chosen node lives, and the key of the node that names the choice.
COMPONENT_NODES = {"attention": "attention", "backbone": "backbone", "dataset": "dataset.source", "scheme": "scheme"}


def check_components(cfg: DictConfig) -> None:
    """Every component's options by its declared schema (``gsa_exp.options``): no torch, nothing built."""
    for group, path in COMPONENT_NODES.items():
        node = _value(cfg, path)
        schema = schema_for(group, str(_value(node, "name"))) if node is not None else None
        if schema is not None:
            check_node(node, path, schema)
    if _value(cfg, "dataset.augment") is not None:
        check_node(_value(cfg, "dataset.augment"), "dataset.augment", AugmentOptions)
    for name, node in (_value(cfg, "callbacks") or {}).items():
        schema = schema_for("callbacks", str(name))
        if schema is not None and node is not None:
            check_node(node, f"callbacks.{name}", schema)


# Loggers whose library is an optional package (the tracking extra), by the class their config builds.
LOGGER_PACKAGES = {"MLFlowLogger": "mlflow", "WandbLogger": "wandb"}


def require_package(option: str, package: str, extra: str = "tracking") -> None:
    """Refuse ``option`` (``logger=mlflow``) when ``package`` is not installed: found, not imported."""
    if importlib.util.find_spec(package) is None:
        raise ConfigError(f"Invalid config: {option}: needs the {package} package: pip install 'gsa-exp[{extra}]'")


def validate_loggers(cfg: DictConfig, packages: Mapping[str, str] = LOGGER_PACKAGES) -> None:
    """Each logger's package is installed, and the learning-rate monitor has a logger to write to."""
    loggers = {name: node for name, node in (_value(cfg, "logger") or {}).items() if node is not None}
    for name, node in loggers.items():
        package = packages.get(str(_value(node, "_target_")).rsplit(".", 1)[-1])
        if package is not None:
            require_package(f"logger={name}", package)
    if not loggers and _value(cfg, "callbacks.lr_monitor") is not None:
        raise ConfigError(
            "Invalid config: ~logger: callbacks.lr_monitor needs a logger; keep one (logger=tensorboard) or drop it too: "
            "~callbacks.lr_monitor"
        )


def validate_speed_options(cfg: DictConfig) -> None:
    """Two implementations of one optimizer step cannot both be chosen."""
    if _value(cfg, "optimizer.fused") and _value(cfg, "optimizer.foreach"):
        _fail("optimizer.foreach", True, "not together with optimizer.fused=true (two implementations of one step)")


def validate_weight_averaging(cfg: DictConfig) -> None:
    """Weights-only checkpoints skip callback hooks, so they would hold the training weights, not the average;
    k-NN takes no optimizer step, so there is nothing to average."""
    if _value(cfg, "callbacks.ema.enabled") and _value(cfg, "scheme.name") == KNN:
        _fail("callbacks.ema.enabled", True, "not with scheme=knn (no optimizer step: the weights never change)")
    if _value(cfg, "callbacks.ema.enabled") and _value(cfg, "callbacks.model_checkpoint.save_weights_only"):
        _fail(
            "callbacks.ema.enabled",
            True,
            "not together with callbacks.model_checkpoint.save_weights_only=true (a weights-only checkpoint "
            "would hold the training weights, not their average)",
        )


def validate_tuning(cfg: DictConfig) -> None:
    """``tune.lr_find`` needs a real fit in one process; its range must rise."""
    if not _value(cfg, "tune.lr_find"):
        return
    if _value(cfg, "tune.min_lr") >= _value(cfg, "tune.max_lr"):
        _fail("tune.min_lr", _value(cfg, "tune.min_lr"), f"must be below tune.max_lr={_value(cfg, 'tune.max_lr')}")
    if _value(cfg, "trainer.fast_dev_run"):
        _fail("tune.lr_find", True, "not with trainer.fast_dev_run (Lightning skips the search there)")
    if _value(cfg, "scheme.name") == KNN:
        _fail("tune.lr_find", True, "not with scheme=knn (no optimizer step, so no learning rate to find)")
    strategy, devices = str(_value(cfg, "trainer.strategy")), _value(cfg, "trainer.devices")
    if "ddp" in strategy or str(devices) != "1" or _value(cfg, "trainer.num_nodes") != 1:
        _fail(
            "tune.lr_find",
            True,
            f"not with trainer.strategy={strategy} trainer.devices={devices} (the search runs in one process): "
            "search on one device (trainer.devices=1), then train with optimizer.lr=<the suggestion>",
        )


def validate_train_config(cfg: DictConfig) -> None:
    """Everything ``train.py`` can check before it touches data: each group by its schema, then the
    checks across keys, then the components built on the meta device."""
    for group, schema in {**TRAIN_GROUPS, "dataset": LoaderOptions}.items():  # no torch: answered at once
        check_group(cfg, group, schema)
    validate_scheme_name(cfg)
    check_components(cfg)
    validate_loggers(cfg)
    validate_speed_options(cfg)
    validate_weight_averaging(cfg)
    validate_tuning(cfg)
    allowed = logged_metrics(cfg)
    if _value(cfg, "monitor.metric") not in allowed:
        _fail("monitor.metric", _value(cfg, "monitor.metric"), f"this run logs {', '.join(sorted(allowed))}")
    channels = _value(cfg, "dataset.channels") or _value(cfg, "dataset.source.channels") or 3
    _dry_build(cfg, cfg.dataset.image_size, int(channels))
    validate_batch_bank(cfg)


def validate_eval_config(cfg: DictConfig) -> None:
    """Everything ``eval.py`` can check before it reads the checkpoint."""
    check_group(cfg, "", EvalRunOptions)
    check_group(cfg, "tta", FlipOptions)
    check_group(cfg, "performance", PerformanceOptions)
    if _value(cfg, "dataset") is not None:  # a few keys over the checkpoint's data set, or another one
        check_group(cfg, "dataset", LoaderOptions, present_only=True)


def validate_predict_config(cfg: DictConfig) -> None:
    """Everything ``predict.py`` can check before it reads the checkpoint and the images."""
    check_group(cfg, "", PredictOptions)
    check_group(cfg, "tta", FlipOptions)


def validate_export_config(cfg: DictConfig) -> None:
    """Everything ``export.py`` can check before it reads the checkpoint: its options, and that the
    format's packages are installed (found without importing them)."""
    check_group(cfg, "", ExportOptions)
    missing = [name for name in EXPORT_PACKAGES[cfg.format] if importlib.util.find_spec(name) is None]
    if missing:
        _fail("format", cfg.format, f"needs {', '.join(missing)}, not installed here: pip install -e '.[export]'")
