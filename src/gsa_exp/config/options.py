"""The option groups that are not one component's constructor: their types, declared once.

Components (backbone, attention, the data module, its sources) declare their options in
their own signatures and schemas; the groups here (the run's top-level keys, the trainer
and optimizer keys every option of those groups shares, loss, monitor, performance) are
read by several parts of a run, so the config layer declares them. Their defaults are the
YAML's (``conf/train.yaml``, ``conf/performance/``): ``tests/test_option_schemas.py``
checks that a schema and its YAML name the same keys. Importing this module loads no
torch: these checks answer a mistyped value at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from gsa_exp.model.names import NONFINITE_POLICIES
from gsa_exp.option_schema import AtLeast, ExistingFile, InRange, NullMeans, OneOf, Required

PRECISIONS = ("64-true", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "transformer-engine")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
TORCH_DEFAULT = NullMeans("torch's choice")


@dataclass(frozen=True)
class RunOptions:
    """train.yaml's top-level keys that are checked on their own."""

    seed: Annotated[int | None, AtLeast(0)]
    ckpt_path: Annotated[str | None, ExistingFile()]
    skip_completed: bool
    auto_resume: Annotated[object, OneOf(("auto", "true", "false"), also=(True, False))]


@dataclass(frozen=True)
class FlipOptions:
    """The ``tta`` group of eval.yaml and predict.yaml: the flipped views whose probabilities are averaged
    (model/tta.py)."""

    hflip: bool
    vflip: bool
    hvflip: bool


@dataclass(frozen=True)
class EvalRunOptions:
    """eval.yaml's top-level keys."""

    ckpt_path: Annotated[
        str | None, Required("give the checkpoint to evaluate: ckpt_path=.../best.ckpt"), ExistingFile()
    ]


EXPORT_FORMATS = ("onnx", "torchscript")
# What writing (and checking) each format needs beyond torch: ``pip install -e '.[export]'``.
EXPORT_PACKAGES = {"onnx": ("onnx", "onnxscript", "onnxruntime"), "torchscript": ()}


@dataclass(frozen=True)
class ExportOptions:
    """export.yaml's keys."""

    ckpt_path: Annotated[str | None, Required("give the checkpoint to export: ckpt_path=.../best.ckpt"), ExistingFile()]
    format: Annotated[str, OneOf(EXPORT_FORMATS)]


PREDICT_USAGE = Required("required: python predict.py ckpt_path=.../best.ckpt input=<image file or folder>")


@dataclass(frozen=True)
class PredictOptions:
    """predict.yaml's keys."""

    ckpt_path: Annotated[str | None, PREDICT_USAGE, ExistingFile()]
    input: Annotated[object, PREDICT_USAGE]  # a path; a folder named 2024 reaches here as an int
    batch_size: Annotated[int, AtLeast(1)]
    device: Annotated[str, OneOf(("auto", "cpu", "cuda"))]
    overlays: bool


@dataclass(frozen=True)
class TrainerOptions:
    """The Trainer arguments a run relies on (the rest are Lightning's, checked by its constructor)."""

    max_epochs: Annotated[int, AtLeast(1)]
    precision: Annotated[str, OneOf(PRECISIONS, also=(16, 32, 64, "16", "32", "64", "bf16"))]


@dataclass(frozen=True)
class OptimizerOptions:
    """The arguments every conf/optimizer/ option shares (each torch optimizer checks its own others)."""

    lr: Annotated[float, AtLeast(0, strict=True)]
    weight_decay: Annotated[float | None, AtLeast(0)]
    fused: Annotated[bool | None, TORCH_DEFAULT]
    foreach: Annotated[bool | None, TORCH_DEFAULT]


@dataclass(frozen=True)
class LossOptions:
    label_smoothing: Annotated[float, InRange(0, 1, "[)")]
    aux_weight: Annotated[float, AtLeast(0)]
    nonfinite: Annotated[str, OneOf(NONFINITE_POLICIES)]


@dataclass(frozen=True)
class MonitorOptions:
    metric: str  # which names a run logs is a check across keys (config/validation.py)
    mode: Annotated[str, OneOf(("min", "max"))]


@dataclass(frozen=True)
class PerformanceOptions:
    """Speed settings (conf/performance/): read by the model, the data module and the optimizer."""

    channels_last: bool
    compile: bool
    compile_mode: Annotated[str, OneOf(COMPILE_MODES)]
    data_on_device: bool
    device_memory_share: Annotated[float, InRange(0, 1, "(]")]
    fused_optimizer: Annotated[bool | None, TORCH_DEFAULT]
    pin_memory: bool


@dataclass(frozen=True)
class TuneOptions:
    """The ``tune`` group of train.yaml: Lightning's learning-rate range test (training/tuning.py)."""

    lr_find: bool
    min_lr: Annotated[float, AtLeast(0, strict=True)]
    max_lr: Annotated[float, AtLeast(0, strict=True)]
    num_training: Annotated[int, AtLeast(13)]  # the suggestion leaves out the first 10 steps and the last
    mode: Annotated[str, OneOf(("exponential", "linear"))]
    early_stop_threshold: Annotated[float | None, AtLeast(1, strict=True), NullMeans("never stops early")]


# Config group -> schema, in the order a run checks them ("" = the top-level keys).
TRAIN_GROUPS = {
    "": RunOptions,
    "trainer": TrainerOptions,
    "performance": PerformanceOptions,  # before the groups that interpolate it (optimizer.fused)
    "optimizer": OptimizerOptions,
    "loss": LossOptions,
    "monitor": MonitorOptions,
    "tune": TuneOptions,
}
