"""The contract every attention variant fulfils, so the model and callbacks treat them alike."""

from __future__ import annotations

from torch import Tensor, nn


class SpatialAttention(nn.Module):
    """Re-weights the pixels of an image batch before the backbone sees it."""

    #: True when the module must see the training split (``prepare``) before it can run.
    needs_training_data: bool = False
    #: The attention's learning rate is the optimiser's times this (its own parameter group).
    lr_multiplier: float = 1.0
    #: True when every image gets its own map (local attention); False when the map is shared.
    image_specific: bool = False

    @property
    def fixed_batch_size(self) -> int | None:
        """The only batch size the module accepts, or None when any size works."""
        return None

    def attach(self, backbone: nn.Module) -> None:
        """Called once by the model with its backbone; variants that act inside it hook in here."""

    def prepare(self, images: Tensor, labels: Tensor) -> None:
        """Data-dependent initialisation from the deterministic training images (uint8, N x C x H x W)."""

    def shared_map(self) -> Tensor | None:
        """The one H x W map applied to every image, or None when maps differ between images or batches."""
        return None

    def last_image_maps(self) -> Tensor | None:
        """The H x W map each image of the last evaluation forward got (B x H x W, detached).

        None for variants that answer ``shared_map()`` (and for no attention); the others
        record their maps in eval mode only, so training pays nothing for it.
        """
        return None

    def regularization_loss(self) -> Tensor | None:
        """Extra loss term the variant wants added to the classification loss."""
        return None

    def on_train_epoch_start(self, epoch: int) -> None:
        """Hook for schedules such as freezing parts of the module after some epochs."""
