"""Attention variants applied to the input image (or, for local CBAM blocks, inside the backbone)."""

from gsa_exp.attention.base import NoAttention, SpatialAttention
from gsa_exp.attention.global_attention import GlobalSpatialAttention
from gsa_exp.attention.local import LocalSpatialAttention
from gsa_exp.attention.static import StaticSpatialAttention

__all__ = [
    "GlobalSpatialAttention",
    "LocalSpatialAttention",
    "NoAttention",
    "SpatialAttention",
    "StaticSpatialAttention",
]
