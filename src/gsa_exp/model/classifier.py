"""The LightningModule: attention + backbone, loss, optimiser and metrics from the config."""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch import Tensor, nn

from gsa_exp.attention.base import SpatialAttention
from gsa_exp.attention.maps import MapReporting
from gsa_exp.backbones import split_outputs
from gsa_exp.data.splits import MULTICLASS, DataInfo
from gsa_exp.model.confusion import (
    class_names,
    confusion_metric,
    confusion_pixels,
    confusion_record,
    per_class_recall,
    recall_keys,
)
from gsa_exp.model.instantiate import instantiate_component
from gsa_exp.model.knn import NeighbourVote
from gsa_exp.model.metrics import classification_metrics
from gsa_exp.model.nonfinite import NonFiniteLossWatch
from gsa_exp.model.schemes import HeadInput, freeze_backbone, hold_in_eval, scheme_name
from gsa_exp.model.tta import averaged_view_logits
from gsa_exp.options.scheme import FROZEN_SCHEMES, KNN
from gsa_exp.tracking import log_image, takes_images

log = logging.getLogger(__name__)
RUN_CONFIG_KEY = "gsa_exp_config"  # checkpoint entry with the resolved run config (see run_config)


class ImageClassifier(pl.LightningModule):
    """logits = backbone(normalize(attention(images))), images in [0, 1].

    Every constructor argument is a plain config dict (saved as hyper-parameters), so
    ``ImageClassifier.load_from_checkpoint(path)`` rebuilds the model with no data at hand:
    the GSA bank travels in the state dict.

    The attention sees only the input, with one exception: once both are built, the model
    hands the backbone to ``attention.attach``. Variants that act inside the backbone
    (local attention with ``placement=stages``: CBAM blocks after every stage) create their
    blocks there and register forward hooks on the stage modules; the others do nothing.
    The blocks belong to the attention module (its parameter group, ``attention.`` keys in
    the state dict), and the hooks are registered again whenever the model is rebuilt.

    ``scheme`` decides what trains: everything (``end_to_end``), the main head and the attention
    (``linear_probe``), or nothing (``knn``: the scores are the votes of ``neighbours``).
    """

    def __init__(
        self,
        *,
        attention: dict[str, Any],
        backbone: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None,
        loss: dict[str, Any],
        monitor: dict[str, str],
        data_info: dict[str, Any],
        scheduler_interval: str = "epoch",  # checkpoints whose hyper-parameters lack it stepped every epoch
        scheme: dict[str, Any] | None = None,  # checkpoints whose hyper-parameters lack it trained end to end
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        info = DataInfo.from_dict(data_info)
        self.data_info = info
        self.attention: SpatialAttention = instantiate_component(
            attention, in_channels=info.channels, image_size=info.image_size, num_train=info.num_train
        )
        self.backbone: nn.Module = instantiate_component(
            backbone,
            in_channels=info.channels,
            num_classes=info.num_classes,
            image_size=info.image_size,
        )
        self.attention.attach(self.backbone)
        self.scheme = scheme_name(scheme)
        self.trained_head = freeze_backbone(self.backbone, self.scheme)  # None: every weight trains, or none
        self.neighbours: NeighbourVote | None = None
        if self.scheme == KNN:
            self.requires_grad_(False)
            self.neighbours = NeighbourVote(
                k=scheme["k"], metric=scheme["metric"], task=info.task, num_classes=info.num_classes
            )
            self.head_input = HeadInput(self.backbone)
        self.channels_last = False  # performance.channels_last (see optimize_for_speed)
        self._compile_options: dict[str, Any] | None = None  # performance.compile (see optimize_for_speed)
        self._compiled_methods: dict[str, Any] = {}
        self.attention_maps: Tensor | None = None  # per-image maps of the last infer() call (see there)
        self.tta_flips: tuple[tuple[int, ...], ...] = ()  # test-time flips infer() averages over (model/tta.py)
        self.register_buffer("mean", torch.tensor(info.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(info.std).view(1, -1, 1, 1), persistent=False)
        if info.task == MULTICLASS:
            self.criterion: nn.Module = nn.CrossEntropyLoss(label_smoothing=loss["label_smoothing"])
        else:  # multi-label: one independent yes/no per label
            self.criterion = nn.BCEWithLogitsLoss()
        self.aux_weight = float(loss["aux_weight"])
        self.nonfinite = loss["nonfinite"]  # declared (stop | skip) and checked with the loss group's schema
        self._nonfinite_watch = NonFiniteLossWatch()
        self.train_metrics = classification_metrics(info.task, info.num_classes, "train/")
        self.val_metrics = classification_metrics(info.task, info.num_classes, "val/")
        self.test_metrics = classification_metrics(info.task, info.num_classes, "test/")
        # per stage: the loop's confusion counts on the device (no checkpoint keys: torchmetrics states are not
        # persistent), and after each loop its counts on the CPU (see on_validation_epoch_end, confusion_entry)
        self.confusion = nn.ModuleDict(
            {stage: confusion_metric(info.task, info.num_classes) for stage in ("val", "test")}
        )
        self.confusion_matrices: dict[str, Tensor] = {}
        self._train_outputs: list[tuple[Tensor, Tensor]] = []  # this epoch's (probabilities, targets)
        # per stage: the last loop's (probabilities, targets) batches, in data order
        self._evaluated: dict[str, list[tuple[Tensor, Tensor]]] = {}
        # The run's resolved config, set by train.py. It goes into every checkpoint through the
        # module's own hook, which Lightning calls for weights-only checkpoints too (callback
        # hooks are skipped there), so eval.py and plot_attention.py can always rebuild the data.
        self.run_config: dict[str, Any] | None = None
        self.train()  # Lightning trains a model in the mode it finds it in: a frozen backbone starts in eval mode

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.run_config is not None:
            checkpoint[RUN_CONFIG_KEY] = self.run_config

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.run_config is None:  # a resumed run keeps its own config
            self.run_config = checkpoint.get(RUN_CONFIG_KEY)

    def train(self, mode: bool = True) -> ImageClassifier:
        """A frozen backbone stays in eval mode (BatchNorm statistics unchanged); with ``knn`` all of the model does."""
        mode = mode and self.neighbours is None
        super().train(mode)
        if self.scheme in FROZEN_SCHEMES:
            hold_in_eval(self.backbone, self.trained_head, mode)
        return self

    # -- inference --------------------------------------------------------------------
    def forward(self, images: Tensor) -> Tensor | tuple:
        gated = self.attention(images)
        if self.compiled and not torch.compiler.is_compiling():
            return self._compiled("backbone_logits")(gated)  # eval forwards behind the cached map
        return self.backbone_logits(gated)

    def backbone_logits(self, gated: Tensor) -> Tensor | tuple:
        """Normalise the attended intensities and run the backbone."""
        inputs = (gated - self.mean) / self.std
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return self.backbone(inputs)

    def optimize_for_speed(self, *, channels_last: bool, compile: bool, compile_mode: str = "default") -> None:
        """The ``performance`` config (no result changes beyond float rounding; docs/performance.md).

        Functions are compiled (the training loss as one graph, the eval forward behind the cached
        map), not modules, so compiled and eager runs load each other's checkpoints.
        """
        self.channels_last = channels_last
        if channels_last:
            self.backbone.to(memory_format=torch.channels_last)
        self._compile_options = {"mode": compile_mode, "dynamic": False} if compile else None

    @property
    def compiled(self) -> bool:
        return self._compile_options is not None

    def _compiled(self, method: str) -> Any:
        """The compiled form of one of this module's methods, made on first use (and again after pickling)."""
        if method not in self._compiled_methods:
            self._compiled_methods[method] = torch.compile(getattr(self, method), **self._compile_options)
        return self._compiled_methods[method]

    def __getstate__(self) -> dict[str, Any]:
        # ddp_spawn pickles the model, weight averaging copies it: copies compile anew and hold no trainer
        return {**super().__getstate__(), "_compiled_methods": {}}

    def infer(self, images: Tensor) -> Tensor:
        """Main logits of any number of images, for evaluation and figures.

        Also sets ``attention_maps`` (N x H x W; None for one shared map or none). The attention
        forms the batches (``SpatialAttention.infer``: ``global_batch`` needs its one size).
        ``tta_flips``: the logits of the mean probabilities over the image and its flips (``model/tta.py``).
        """
        logits = self.attention.infer(images, self._main_logits)
        maps = self.attention.last_image_maps() if isinstance(self.attention, MapReporting) else None
        if self.tta_flips:  # the maps stay those of the images as given
            views = [logits, *(self.attention.infer(images.flip(dims), self._main_logits) for dims in self.tta_flips)]
            if self.neighbours is not None:  # vote fractions are the probabilities: their mean
                logits = torch.stack(views).mean(dim=0)
            else:
                logits = averaged_view_logits(views, multiclass=self.data_info.task == MULTICLASS)
        self.attention_maps = maps
        return logits

    def _main_logits(self, images: Tensor) -> Tensor:
        """The main head's logits; with ``knn``, the neighbours' vote fractions in their place."""
        logits, _ = split_outputs(self(images))
        if self.neighbours is not None:
            return self.neighbours.scores(self.head_input.take())
        return logits

    def reset_eval_context(self) -> None:
        """Forget the images of the previous evaluation loop (see ``infer``)."""
        self.attention.reset_eval_context()

    def probabilities(self, logits: Tensor) -> Tensor:
        if self.neighbours is not None:  # vote fractions already
            return logits
        return logits.softmax(dim=1) if self.data_info.task == MULTICLASS else logits.sigmoid()

    def metric_targets(self, labels: Tensor) -> Tensor:
        return labels if self.data_info.task == MULTICLASS else labels.long()

    # -- steps ------------------------------------------------------------------------
    def training_loss(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """The loss a step minimises (main head, auxiliary heads, attention regulariser) and the main logits.

        The whole of it is one function so that ``performance.compile`` captures it as one graph.
        """
        logits, auxiliary = split_outputs(self(images))
        loss = self.criterion(logits, labels)
        for aux_logits in auxiliary:
            loss = loss + self.aux_weight * self.criterion(aux_logits, labels)
        penalty = self.attention.regularization_loss()
        if penalty is not None:
            loss = loss + penalty
        return loss, logits.detach()

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor | None:
        if self.neighbours is not None:
            self._store_features(batch)
            return None
        images, labels = batch
        if self.compiled:
            torch.compiler.cudagraph_mark_step_begin()  # a new step: the last step's graph outputs may be reused
            loss, logits = self._compiled("training_loss")(images, labels)
            loss, logits = loss.clone(), logits.clone()  # graph outputs are overwritten by the next replay
        else:
            loss, logits = self.training_loss(images, labels)
        if self.nonfinite == "skip":  # needs to know now: one device-to-host read per step
            if not torch.isfinite(loss):  # returning None skips backward and the optimizer step
                log.warning(
                    "non-finite loss %s at epoch %d, step %d: batch skipped",
                    loss.item(),
                    self.current_epoch,
                    self.global_step,
                )
                return None
        else:  # stop: recorded on the device, read at the logging interval (on_train_batch_end)
            self._nonfinite_watch.update(loss, step=self.global_step, epoch=self.current_epoch, batch=batch_idx)
        # Kept on the device and fed to the metrics once per epoch (on_train_epoch_end): per-step
        # updates cost several small kernels, and logging Metric objects every step makes Lightning
        # move every metric state (AUROC keeps every prediction) each step, O(steps^2) per epoch.
        self._train_outputs.append((self.probabilities(logits), self.metric_targets(labels)))
        # not prog_bar: Lightning would read it back after every step; the progress bar reads it itself
        self.log("train/loss", loss, on_step=True, on_epoch=True)
        return loss

    @torch.no_grad()
    def _store_features(self, batch: tuple[Tensor, ...]) -> None:
        """``knn``'s step: the head's input for each training image goes into the bank (padding left out)."""
        images, labels, *padded = batch
        count = padded[0] if padded else images.shape[0]
        self(images)
        self.neighbours.add(self.head_input.take()[:count], labels[:count])

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Reads the non-finite-loss record every ``trainer.log_every_n_steps`` batches and after an epoch's last."""
        done = batch_idx + 1
        if done % self.trainer.log_every_n_steps == 0 or done >= self.trainer.num_training_batches:
            self._nonfinite_watch.raise_if_seen()

    def _evaluate(self, batch: tuple[Tensor, ...], metrics: Any, stage: str) -> None:
        """Metrics and loss of one evaluation batch; a padded batch (images, labels, count) counts its first images only."""
        images, labels, *padded = batch
        count = padded[0] if padded else images.shape[0]
        logits = self.infer(images)[:count]
        labels = labels[:count]
        if self.attention_maps is not None:
            self.attention_maps = self.attention_maps[:count]
        probabilities, targets = self.probabilities(logits), self.metric_targets(labels)
        metrics.update(probabilities, targets)
        self.confusion[stage].update(probabilities, targets)
        self._evaluated.setdefault(stage, []).append((probabilities.detach(), targets))
        if self.neighbours is None:  # votes have no loss
            self.log(f"{stage}/loss", self.criterion(logits, labels), on_epoch=True, sync_dist=True, batch_size=count)
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage == "val")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        if self.neighbours is not None and self.trainer.sanity_checking:
            return  # the bank is filled by the training pass that follows
        self._evaluate(batch, self.val_metrics, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics, "test")

    def on_train_epoch_start(self) -> None:
        if self.neighbours is not None:
            self.neighbours.clear()  # one whole pass fills the bank
        self._train_outputs = []
        self._nonfinite_watch.reset()
        self.attention.on_train_epoch_start(self.current_epoch)

    def on_train_epoch_end(self) -> None:
        """The epoch's training metrics: one update with every step's outputs, logged once. ``knn``'s
        bank is complete after one pass (validated already): training stops there."""
        if self.neighbours is not None:
            self.trainer.should_stop = True
        if self._train_outputs:
            probabilities, targets = (torch.cat(parts) for parts in zip(*self._train_outputs))
            self._train_outputs = []
            self.train_metrics.update(probabilities, targets)
            self.log_dict(self.train_metrics, on_step=False, on_epoch=True)

    def on_validation_epoch_start(self) -> None:
        self.reset_eval_context()
        self._evaluated["val"] = []
        self.confusion["val"].reset()

    def on_test_epoch_start(self) -> None:
        self.reset_eval_context()
        self._evaluated["test"] = []
        self.confusion["test"].reset()

    def on_validation_epoch_end(self) -> None:
        self._close_confusion("val", draw=self.trainer.state.fn == "fit" and not self.trainer.sanity_checking)

    def on_test_epoch_end(self) -> None:
        self._close_confusion("test", draw=True)

    def _close_confusion(self, stage: str, draw: bool) -> None:
        """The loop's confusion counts: per-class recall as ``<stage>/recall/<class>`` scalars, the counts kept
        for ``confusion_entry`` and, when ``draw`` (fit's validation epochs, tests), drawn for the loggers."""
        metric = self.confusion[stage]
        if not metric.update_called:
            return
        counts = metric.compute()  # summed over processes
        metric.reset()
        names = class_names(self.data_info.label_names, self.data_info.num_classes)
        for key, value in zip(recall_keys(stage, names), per_class_recall(counts, self.data_info.task)):
            self.log(key, value.float(), on_epoch=True, sync_dist=True)  # equal on every rank: the mean changes nothing
        self.confusion_matrices[stage] = counts.detach().cpu()
        if draw and self.trainer.is_global_zero:
            self._draw_confusion(stage, counts, names)

    def _draw_confusion(self, stage: str, counts: Tensor, names: list[str]) -> None:
        if not takes_images(self.loggers):  # no figure drawn for nobody
            return
        title = f"{stage} confusion matrix (step {self.global_step})"
        pixels = confusion_pixels(counts, names, self.data_info.task, title)
        log_image(self.loggers, f"{stage}/confusion_matrix", pixels, self.global_step, "HWC")

    def confusion_entry(self, stage: str) -> dict[str, Any] | None:
        """The last ``val`` or ``test`` loop's confusion counts with the label names, as JSON values; None before any."""
        counts = self.confusion_matrices.get(stage)
        if counts is None:
            return None
        names = class_names(self.data_info.label_names, self.data_info.num_classes)
        return confusion_record(counts, names, self.data_info.task)

    def evaluated_outputs(self, stage: str) -> tuple[Tensor, Tensor] | None:
        """Per-image probabilities (N x classes, or N x labels) and targets of the last ``val`` or ``test``
        loop, in data order, on the CPU; None before any."""
        parts = self._evaluated.get(stage)
        if not parts:
            return None
        probabilities, targets = (torch.cat(column).cpu() for column in zip(*parts))
        return probabilities.float(), targets

    # -- optimisation -----------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        """The ``_partial_`` optimizer and scheduler; the attention learns at ``lr x attention.lr_multiplier``."""
        if self.neighbours is not None:
            return None  # knn: nothing to optimise
        base_lr = self.hparams.optimizer["lr"]
        trained = [
            parameter for parameter in self.backbone.parameters() if parameter.requires_grad
        ]  # linear_probe: the head
        attention = list(self.attention.parameters())
        groups = [  # named: lr-Adam/backbone, lr-Adam/attention in the loggers
            {"params": trained, "name": "backbone"},
            {"params": attention, "lr": base_lr * self.attention.lr_multiplier, "name": "attention"},
        ]
        optimizer = instantiate(self.hparams.optimizer, _convert_="all")([g for g in groups if g["params"]])
        if not self.hparams.scheduler or "_target_" not in self.hparams.scheduler:  # scheduler=none: a constant rate
            return optimizer
        scheduler = instantiate(self.hparams.scheduler, _convert_="all")(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "interval": self.hparams.scheduler_interval,
                "monitor": self.hparams.monitor["metric"],
            },
        }
