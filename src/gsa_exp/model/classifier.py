"""The LightningModule: attention + backbone, loss, optimiser and metrics from the config."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from gsa_exp.attention.base import SpatialAttention
from gsa_exp.backbones import split_outputs
from gsa_exp.config.instantiate import instantiate_component
from gsa_exp.data.splits import MULTICLASS, DataInfo
from gsa_exp.model.metrics import classification_metrics


class ImageClassifier(pl.LightningModule):
    """logits = backbone(normalize(attention(images))), images in [0, 1].

    Every constructor argument is a plain config dict (saved as hyper-parameters), so
    ``ImageClassifier.load_from_checkpoint(path)`` rebuilds the model with no data at hand:
    the GSA bank travels in the state dict.
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
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        info = DataInfo.from_dict(data_info)
        self.data_info = info
        self.attention: SpatialAttention = instantiate_component(
            attention, in_channels=info.channels, image_size=info.image_size, num_train=info.num_train
        )
        self.backbone: nn.Module = instantiate_component(
            backbone, in_channels=info.channels, num_classes=info.num_classes, image_size=info.image_size
        )
        self.register_buffer("mean", torch.tensor(info.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(info.std).view(1, -1, 1, 1), persistent=False)
        if info.task == MULTICLASS:
            self.criterion: nn.Module = nn.CrossEntropyLoss(label_smoothing=loss["label_smoothing"])
        else:  # multi-label: one independent yes/no per label
            self.criterion = nn.BCEWithLogitsLoss()
        self.aux_weight = float(loss["aux_weight"])
        self.train_metrics = classification_metrics(info.task, info.num_classes, "train/")
        self.val_metrics = classification_metrics(info.task, info.num_classes, "val/")
        self.test_metrics = classification_metrics(info.task, info.num_classes, "test/")

    # -- inference --------------------------------------------------------------------
    def forward(self, images: Tensor) -> Tensor | tuple:
        return self.backbone((self.attention(images) - self.mean) / self.std)

    def probabilities(self, logits: Tensor) -> Tensor:
        return logits.softmax(dim=1) if self.data_info.task == MULTICLASS else logits.sigmoid()

    def metric_targets(self, labels: Tensor) -> Tensor:
        return labels if self.data_info.task == MULTICLASS else labels.long()

    # -- steps ------------------------------------------------------------------------
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        logits, auxiliary = split_outputs(self(images))
        loss = self.criterion(logits, labels)
        for aux_logits in auxiliary:
            loss = loss + self.aux_weight * self.criterion(aux_logits, labels)
        penalty = self.attention.regularization_loss()
        if penalty is not None:
            loss = loss + penalty
        self.train_metrics.update(self.probabilities(logits.detach()), self.metric_targets(labels))
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True)
        return loss

    def _evaluate(self, batch: tuple[Tensor, Tensor], metrics: Any, stage: str) -> None:
        images, labels = batch
        logits, _ = split_outputs(self(images))
        metrics.update(self.probabilities(logits), self.metric_targets(labels))
        self.log(f"{stage}/loss", self.criterion(logits, labels), on_epoch=True, sync_dist=True)
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage == "val")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics, "test")

    def on_train_epoch_start(self) -> None:
        self.attention.on_train_epoch_start(self.current_epoch)

    # -- optimisation -----------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        base_lr = self.hparams.optimizer["lr"]
        groups = [
            {"params": list(self.backbone.parameters())},
            {"params": list(self.attention.parameters()), "lr": base_lr * self.attention.lr_multiplier},
        ]
        optimizer = instantiate_component(self.hparams.optimizer, params=[g for g in groups if g["params"]])
        if self.hparams.scheduler is None:
            return optimizer
        scheduler_config = dict(self.hparams.scheduler)
        interval = scheduler_config.pop("interval")
        scheduler = instantiate_component(scheduler_config, optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": interval, "monitor": self.hparams.monitor["metric"]},
        }
