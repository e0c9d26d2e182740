"""The contract every attention variant fulfils, so the model treats them alike.

It is the map a variant applies (``forward``) and the few hooks the model calls; showing
the map is a separate, optional protocol (``maps.MapReporting``).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from gsa_exp.errors import OptionError


class AttentionError(OptionError):
    """An attention option that cannot work; the message names it relative to the variant (``$bank.components``)."""

    component = "attention"


class SpatialAttention(nn.Module):
    """Re-weights the pixels of an image batch before the backbone sees it."""

    #: True when the module must see the training split (``prepare``) before it can run.
    needs_training_data: bool = False
    #: The attention's learning rate is the optimiser's times this (its own parameter group).
    lr_multiplier: float = 1.0
    #: True when the module adds weights inside the backbone (``attach``), which a frozen backbone would then train.
    acts_inside_backbone: bool = False

    @property
    def meaningful_untrained(self) -> bool:
        """Whether the module means something without a gradient step (``scheme=knn`` takes none):
        the identity does; a learned map would stay at its uniform start."""
        return True

    @property
    def fixed_batch_size(self) -> int | None:
        """The only batch size the module accepts, or None when any size works."""
        return None

    def attach(self, backbone: nn.Module) -> None:
        """Called once by the model with its backbone; variants that act inside it hook in here."""

    def prepare(self, images: Tensor, labels: Tensor) -> None:
        """Data-dependent initialisation from the deterministic training images (uint8, N x C x H x W)."""

    def infer(self, images: Tensor, logits_of: Callable[[Tensor], Tensor]) -> Tensor:
        """Main logits of any number of images; ``logits_of`` runs the whole model on one batch.

        Variants that take batches of one size only (``fixed_batch_size``) form them here.
        """
        return logits_of(images)

    def reset_eval_context(self) -> None:
        """Forget what ``infer`` kept from the previous evaluation loop (a new loop starts)."""

    def regularization_loss(self) -> Tensor | None:
        """Extra loss term the variant wants added to the classification loss."""
        return None

    def on_train_epoch_start(self, epoch: int) -> None:
        """Hook for schedules such as freezing parts of the module after some epochs."""
