"""Local (image-specific) spatial attention, CBAM-style: the attention the paper contrasts GSA with.

``placement=input`` (this module): the map is computed from the image itself and applied to
it, at the very place where the global map acts (x' = x * A(x)), so the comparison with GSA
is like for like. ``placement=stages`` is CBAM as it is usually used, blocks after every
backbone stage: ``local_stages.py``; ``attention=local attention.placement=stages`` builds it
(see ``__new__``).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from gsa_exp.attention.cbam import LocalMapAttention, SpatialGate
from gsa_exp.attention.learned_map import apply_gate
from gsa_exp.attention.local_stages import LocalStageAttention
from gsa_exp.attention.registry import register_attention


@register_attention("local", order=20)
class LocalSpatialAttention(LocalMapAttention):
    """CBAM's spatial attention on the input image: one map per image, where the global map acts."""

    placement = "input"

    def __new__(cls, *args: Any, **arguments: Any) -> Any:
        # placement is the YAML's switch between the two local variants (configs, sweeps and
        # checkpoints spell attention=local attention.placement=stages): the one place it is mapped.
        if cls is LocalSpatialAttention and arguments.get("placement") == "stages":
            return LocalStageAttention(**arguments)
        return super().__new__(cls)

    def __init__(self, *, kernel_size: int, init_bias: float, **options: Any) -> None:
        super().__init__(kernel_size=kernel_size, init_bias=init_bias, **options)
        self.spatial = SpatialGate(kernel_size, self.init_bias)

    def forward(self, images: Tensor) -> Tensor:
        self.start_forward(images)
        return apply_gate(images, self.spatial_map(self.spatial, images), self.mode)
