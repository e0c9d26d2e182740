"""The optional half of the attention contract: the maps a variant can show.

The model needs only the map a variant applies (``SpatialAttention``); the map monitor,
the figures, predictions and the check across processes also show it. Variants that have
a map implement ``MapReporting``, and callers test for it, so a variant without one (no
attention) carries no methods that only answer None.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class MapReporting(Protocol):
    """A variant whose maps can be shown: one map shared by every image, or a map per image."""

    #: True when every image gets its own map (local attention); False when images share one.
    image_specific: bool

    def shared_map(self) -> Tensor | None:
        """The one H x W map applied to every image, or None when maps differ between images or batches."""
        ...

    def last_image_maps(self) -> Tensor | None:
        """The H x W map each image of the last evaluation got (N x H x W, detached).

        None for variants that answer ``shared_map()``; the others record their maps in
        eval mode only, so training pays nothing for it.
        """
        ...


def shared_map_of(attention: object) -> Tensor | None:
    """The map every image shares; None for variants with per-image (or per-batch) maps and for no attention."""
    return attention.shared_map() if isinstance(attention, MapReporting) else None
