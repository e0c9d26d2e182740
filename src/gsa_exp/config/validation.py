"""Config validation: every check a run needs before it loads data or writes a file, in one place.

Each failure is one line: the key, the bad value and what is allowed. ``ConfigError`` is
a Hydra "compact" exception, so Hydra prints just that line (no stack trace).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.errors import CompactHydraException, InstantiationException
from omegaconf import DictConfig, OmegaConf

from gsa_exp.errors import OptionMessage
from gsa_exp.model.instantiate import instantiate_component
from gsa_exp.model.names import METRIC_NAMES, NONFINITE_POLICIES

PRECISIONS = ("64-true", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "transformer-engine")
MONITOR_MODES = ("min", "max")


class ConfigError(CompactHydraException, ValueError):
    """A config value that cannot work; the message names the key, the value and what is allowed."""


def _value(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, throw_on_missing=False)


def _fail(key: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"Invalid config: {key}={value!r}: {allowed}")


def require_int(cfg: DictConfig, key: str, minimum: int, nullable: bool = False) -> None:
    value = _value(cfg, key)
    if value is None and nullable:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(key, value, f"must be an integer >= {minimum}" + (" or null" if nullable else ""))
    if value < minimum:
        _fail(key, value, f"must be >= {minimum}" + (" or null" if nullable else ""))


def require_positive_number(cfg: DictConfig, key: str, allow_zero: bool = False) -> None:
    value = _value(cfg, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(key, value, "must be a number " + (">= 0" if allow_zero else "> 0"))
    if value < 0 or (value == 0 and not allow_zero):
        _fail(key, value, "must be " + (">= 0" if allow_zero else "> 0"))


def require_choice(cfg: DictConfig, key: str, choices: tuple) -> None:
    value = _value(cfg, key)
    if value not in choices:
        _fail(key, value, f"allowed: {', '.join(map(str, choices))}")


def require_existing_file(cfg: DictConfig, key: str) -> None:
    value = _value(cfg, key)
    if value is None:
        return
    path = Path(str(value)).expanduser()
    resolved = path if path.is_absolute() else Path.cwd() / path
    if not resolved.is_file():
        _fail(key, value, f"no such file (looked at {resolved}, relative to the launch directory)")


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
    if message.startswith(f"{key}.") or message.startswith("dataset."):
        return ConfigError(f"Invalid config: {message}")
    return ConfigError(f"Invalid config: {key}: {message}")


def _dry_build(cfg: DictConfig, image_size: int, channels: int) -> None:
    """Build backbone and attention on the meta device: every option checked, no memory used."""
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


def validate_batch_bank(cfg: DictConfig) -> None:
    """Per-batch global attention (``attention=global_batch``, or ``global`` with ``bank.source=batch``)
    reads its features from batches of one fixed size."""
    if _value(cfg, "attention.name") == "global_batch":
        spelling = "attention=global_batch"
    elif _value(cfg, "attention.bank.source") == "batch":
        spelling = "attention.bank.source=batch"
    else:
        return
    require_int(cfg, "attention.bank.batch_size", 1)
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
    """Every metric a training run logs and a checkpoint callback can monitor."""
    names = {f"val/{name}" for name in (*METRIC_NAMES, "loss")}
    names |= {f"train/{name}" for name in METRIC_NAMES} | {"train/loss_epoch"}
    synthetic = str(_value(cfg, "dataset.source._target_")).endswith("SyntheticLesions")
    if synthetic and _value(cfg, "attention.name") != "none":
        names.add("val/map_auroc")  # only generated data know where their class signal lives
    return names


def validate_data_options(cfg: DictConfig) -> None:
    require_int(cfg, "dataset.image_size", 1)
    require_int(cfg, "dataset.batch_size", 1)
    require_int(cfg, "dataset.eval_batch_size", 1)
    require_int(cfg, "dataset.num_workers", 0)
    require_int(cfg, "dataset.channels", 1, nullable=True)


def validate_trainer_options(cfg: DictConfig) -> None:
    require_int(cfg, "trainer.max_epochs", 1)
    precision = _value(cfg, "trainer.precision")
    if str(precision) not in PRECISIONS and precision not in (16, 32, 64, "16", "32", "64", "bf16"):
        _fail("trainer.precision", precision, f"allowed: {', '.join(PRECISIONS)}")


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def validate_speed_options(cfg: DictConfig) -> None:
    """The ``performance`` keys and the optimizer's implementation switches."""
    for key in ("channels_last", "compile", "data_on_device", "pin_memory"):
        if not isinstance(_value(cfg, f"performance.{key}"), bool):
            _fail(f"performance.{key}", _value(cfg, f"performance.{key}"), "must be true or false")
    require_choice(cfg, "performance.compile_mode", COMPILE_MODES)
    share = _value(cfg, "performance.device_memory_share")
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
        _fail("performance.device_memory_share", share, "must be a number in (0, 1]")
    for key in ("performance.fused_optimizer", "optimizer.fused", "optimizer.foreach"):
        value = _value(cfg, key)
        if value is not None and not isinstance(value, bool):
            _fail(key, value, "must be true, false or null (torch's choice)")
    if _value(cfg, "optimizer.fused") and _value(cfg, "optimizer.foreach"):
        _fail("optimizer.foreach", True, "not together with optimizer.fused=true (two implementations of one step)")


def validate_train_config(cfg: DictConfig) -> None:
    """Everything ``train.py`` can check before it touches data."""
    if _value(cfg, "seed") is not None:
        require_int(cfg, "seed", 0)
    validate_data_options(cfg)
    validate_trainer_options(cfg)
    require_positive_number(cfg, "optimizer.lr")
    if _value(cfg, "optimizer.weight_decay") is not None:
        require_positive_number(cfg, "optimizer.weight_decay", allow_zero=True)
    require_choice(cfg, "loss.nonfinite", NONFINITE_POLICIES)
    validate_speed_options(cfg)
    smoothing = _value(cfg, "loss.label_smoothing")
    if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)) or not 0 <= smoothing < 1:
        _fail("loss.label_smoothing", smoothing, "must be in [0, 1)")
    require_choice(cfg, "monitor.mode", MONITOR_MODES)
    allowed = logged_metrics(cfg)
    if _value(cfg, "monitor.metric") not in allowed:
        _fail("monitor.metric", _value(cfg, "monitor.metric"), f"this run logs {', '.join(sorted(allowed))}")
    require_existing_file(cfg, "ckpt_path")
    validate_batch_bank(cfg)
    channels = _value(cfg, "dataset.channels") or _value(cfg, "dataset.source.channels") or 3
    _dry_build(cfg, cfg.dataset.image_size, int(channels))


def validate_eval_config(cfg: DictConfig) -> None:
    """Everything ``eval.py`` can check before it reads the checkpoint."""
    if not _value(cfg, "ckpt_path"):
        _fail("ckpt_path", _value(cfg, "ckpt_path"), "give the checkpoint to evaluate: ckpt_path=.../best.ckpt")
    require_existing_file(cfg, "ckpt_path")
    if _value(cfg, "dataset") is not None:
        for key in ("dataset.image_size", "dataset.batch_size", "dataset.eval_batch_size"):
            if _value(cfg, key) is not None:
                require_int(cfg, key, 1)


def validate_predict_config(cfg: DictConfig) -> None:
    """Everything ``predict.py`` can check before it reads the checkpoint and the images."""
    for key in ("ckpt_path", "input"):
        if not _value(cfg, key):
            _fail(
                key,
                _value(cfg, key),
                "required: python predict.py ckpt_path=.../best.ckpt input=<image file or folder>",
            )
    require_existing_file(cfg, "ckpt_path")
    require_int(cfg, "batch_size", 1)
    require_choice(cfg, "device", ("auto", "cpu", "cuda"))
