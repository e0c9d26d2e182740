"""The options of the project's callbacks (``conf/callbacks/``); Lightning checks the keys it owns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from gsa_exp.option_schema import AtLeast, InRange, NullMeans, OneOf, Options
from gsa_exp.options import declares

PROGRESS_BAR_STYLES = ("tqdm", "rich")
LR_INTERVALS = ("epoch", "step")  # Lightning's scheduler intervals


@declares("callbacks", "progress_bar")
@dataclass(frozen=True)
class ProgressBarOptions(Options):
    enabled: bool
    refresh_rate: Annotated[int, AtLeast(1)]
    style: Annotated[str, OneOf(PROGRESS_BAR_STYLES)]


@declares("callbacks", "attention_map")
@dataclass(frozen=True)
class AttentionMapOptions(Options):
    log_images: bool
    samples_per_class: Annotated[int, AtLeast(1)]  # test images per class whose maps are saved and overlaid


@declares("callbacks", "model_checkpoint")
@dataclass(frozen=True)
class CheckpointOptions(Options):
    save_last: bool  # last.ckpt after every training epoch
    last_every_n_train_steps: Annotated[int | None, AtLeast(1), NullMeans("epochs only")]
    save_weights_only: bool


@declares("callbacks", "ema")
@dataclass(frozen=True)
class EmaOptions(Options):
    enabled: bool
    decay: Annotated[float, InRange(0, 1, "()")]  # the average's share kept at each update
    warmup: bool  # timm's ramp: min(decay, 1 - (1 + n)^(-2/3)) at the n-th update
    every_n_steps: Annotated[int, AtLeast(1)]


@declares("callbacks", "lr_monitor")
@dataclass(frozen=True)
class LearningRateMonitorOptions(Options):
    logging_interval: Annotated[str | None, OneOf(LR_INTERVALS), NullMeans("each scheduler's own interval")]
    log_momentum: bool
    log_weight_decay: bool
