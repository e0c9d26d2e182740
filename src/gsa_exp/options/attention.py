"""The options of the attention variants (``conf/attention/<name>.yaml``, less ``_target_`` and ``name``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from gsa_exp.errors import OptionError
from gsa_exp.option_schema import AtLeast, NullMeans, Odd, OneOf, Options
from gsa_exp.options import declares

MODES = ("multiply", "residual")
BANK_SOURCES = ("train", "batch")
CLASSIFIERS = ("linear", "mlp")
INITS = ("constant", "class_contrast")
PLACEMENTS = ("input", "stages")


@dataclass(frozen=True)
class RegularizationOptions(Options):
    """Optional terms that make the important/unimportant boundary crisp (``attention.regularization``)."""

    sparsity: Annotated[float, AtLeast(0)]  # weight of mean(A): prefers attending to few pixels
    binarization: Annotated[float, AtLeast(0)]  # weight of mean(A * (1 - A)): prefers values near 0 or 1


@dataclass(frozen=True)
class GateOptions(Options):
    """What every learned map shares: A = sigmoid(logits / temperature), applied as x * A or x * (1 + A)."""

    temperature: Annotated[float, AtLeast(0, strict=True)]
    mode: Annotated[str, OneOf(MODES)]
    regularization: RegularizationOptions
    freeze_after_epochs: Annotated[int | None, AtLeast(0), NullMeans("never frozen")]
    lr_multiplier: Annotated[float, AtLeast(0, strict=True)]


@dataclass(frozen=True)
class LearnedMapOptions(GateOptions):
    init_bias: float  # the logit every map starts at (positive: A starts close to 1, the plain backbone)


@dataclass(frozen=True)
class BankOptions(Options):
    """How the pixel-feature bank is built (``attention.bank``)."""

    source: Annotated[str, OneOf(BANK_SOURCES)]  # train: a fixed bank of the training split | batch: each batch's
    num_images: Annotated[int | None, AtLeast(1), NullMeans("all")]  # class-stratified subset size
    components: Annotated[int | None, AtLeast(1), NullMeans("raw bank")]  # PCA compression to this many components
    standardize: bool  # centre and scale every feature (bank row) over the pixels
    chunk_size: Annotated[int, AtLeast(1)]  # images converted at a time while building
    seed: Annotated[int | None, AtLeast(0)]  # seeds the stratified subset
    batch_size: Annotated[int | None, AtLeast(1)] = None  # source=batch: the fixed number of images per batch

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.source == "batch" and self.batch_size is None:
            raise OptionError(
                "$batch_size=None: must be an integer >= 1 with $source=batch (the fixed number of images per batch)"
            )


@dataclass(frozen=True)
class BatchBankOptions(Options):
    """The bank of each batch (``attention.bank`` of ``global_batch``)."""

    batch_size: Annotated[int, AtLeast(1)]  # the fixed number of images per batch (set it to dataset.batch_size)
    standardize: bool


@dataclass(frozen=True)
class BatchClassifierOptions(Options):
    """The pixel classifier g_theta (``attention.classifier``)."""

    kind: Annotated[str, OneOf(CLASSIFIERS)]  # linear: logistic regression per pixel | mlp
    hidden: Annotated[int, AtLeast(1)]  # hidden width of the mlp
    kernel_size: Annotated[int, AtLeast(1), Odd()]  # 1 = pure per-pixel; k > 1 lets a k x k neighbourhood vote
    normalize_fan_in: bool  # weights / sqrt(K * k * k): the map moves at a pace independent of the bank size


@dataclass(frozen=True)
class ClassifierOptions(BatchClassifierOptions):
    init: Annotated[str, OneOf(INITS)]  # constant: A starts uniform | class_contrast: high where the classes differ
    init_scale: Annotated[float, AtLeast(0)]  # class_contrast: logit spread (in standard deviations of the score)
    init_smoothing: Annotated[int, AtLeast(1), Odd()]  # class_contrast: the score averaged over k x k neighbourhoods

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.init == "class_contrast" and self.kind != "linear":
            raise OptionError(
                f"$init='class_contrast': needs $kind='linear', got {self.kind!r} (with kind={self.kind} set $init=constant)"
            )


@declares("attention", "none")
@dataclass(frozen=True)
class NoAttentionOptions(Options):
    """The baseline has no options."""


@declares("attention", "static")
@dataclass(frozen=True)
class StaticOptions(LearnedMapOptions):
    """A free logit map shared by all images."""


@declares("attention", "global")
@dataclass(frozen=True)
class GlobalOptions(LearnedMapOptions):
    bank: BankOptions
    classifier: ClassifierOptions


@declares("attention", "global_batch")
@dataclass(frozen=True)
class GlobalBatchOptions(LearnedMapOptions):
    bank: BatchBankOptions
    classifier: BatchClassifierOptions


@dataclass(frozen=True)
class CbamOptions(Options):
    placement: Annotated[str, OneOf(PLACEMENTS)]  # input: one map on the image | stages: after every stage
    kernel_size: Annotated[int, AtLeast(1), Odd()]  # the spatial gate's convolution
    reduction: Annotated[int, AtLeast(1)]  # channel gate's bottleneck ratio


@declares("attention", "local")
@dataclass(frozen=True)
class LocalOptions(LearnedMapOptions, CbamOptions):
    """CBAM-style attention: a map per image."""
