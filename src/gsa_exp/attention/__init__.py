"""Attention variants applied to the input image (or, for local CBAM blocks, inside the backbone).

Every module of this package is imported here, so each variant registers itself
(``registry.py``); ``create_attention(name, ...)`` builds one by the name its YAML uses.
"""

from gsa_exp.attention.base import SpatialAttention
from gsa_exp.attention.global_attention import GlobalSpatialAttention
from gsa_exp.attention.local import LocalSpatialAttention
from gsa_exp.attention.maps import MapReporting, shared_map_of
from gsa_exp.attention.none import NoAttention
from gsa_exp.attention.registry import (
    attention_class,
    attention_order,
    create_attention,
    import_modules,
    list_attention,
    register_attention,
)
from gsa_exp.attention.static import StaticSpatialAttention

import_modules(__name__, __path__)  # variants no one imports by name register themselves too

__all__ = [
    "GlobalSpatialAttention",
    "LocalSpatialAttention",
    "MapReporting",
    "NoAttention",
    "SpatialAttention",
    "StaticSpatialAttention",
    "attention_class",
    "attention_order",
    "create_attention",
    "list_attention",
    "register_attention",
    "shared_map_of",
]
