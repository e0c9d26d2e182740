"""Checks that only matter with several processes."""

from __future__ import annotations

import pytorch_lightning as pl

from gsa_exp.attention import shared_map_of


class SharedMapConsistency(pl.Callback):
    """Under data-parallel training, proves every rank applies the same global attention map.

    The map is a function of parameters (synchronised by DDP) and the bank (built
    deterministically on every rank); this check turns that argument into a fact each
    validation epoch and stops the run if ranks ever disagree.
    """

    def __init__(self, *, tolerance: float) -> None:
        super().__init__()
        self.tolerance = tolerance
        self.max_difference: float | None = None

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.world_size < 2 or trainer.sanity_checking:
            return
        attention_map = shared_map_of(pl_module.attention)
        if attention_map is None:
            return
        maps = trainer.strategy.all_gather(attention_map.detach().float())  # world_size x H x W
        self.max_difference = float((maps - maps[0:1]).abs().max())
        pl_module.log("attention/rank_map_max_difference", self.max_difference, rank_zero_only=True)
        if self.max_difference > self.tolerance:
            raise RuntimeError(
                f"the global attention map differs between ranks by up to {self.max_difference:.3g} "
                f"(tolerance {self.tolerance}); the pixel-feature bank or parameters are out of sync"
            )


__all__ = ["SharedMapConsistency"]
