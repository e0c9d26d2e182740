"""Attention variants applied to the input image before the backbone."""

from gsa_exp.attention.base import NoAttention, SpatialAttention
from gsa_exp.attention.global_attention import GlobalSpatialAttention

__all__ = ["GlobalSpatialAttention", "NoAttention", "SpatialAttention"]
