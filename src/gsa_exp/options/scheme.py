"""The training schemes (``conf/scheme/<name>.yaml``): how the backbone's weights are used, after MedMNIST+.

``end_to_end`` trains every weight; ``linear_probe`` trains the classifier head (and an attention
map in front of the backbone) on frozen features; ``knn`` trains nothing and classifies by the
training images nearest in the frozen feature space. What each refuses and why: docs/method.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from gsa_exp.option_schema import AtLeast, OneOf, Options
from gsa_exp.options import declares

END_TO_END, LINEAR_PROBE, KNN = "end_to_end", "linear_probe", "knn"
SCHEMES = (END_TO_END, LINEAR_PROBE, KNN)
FROZEN_SCHEMES = (LINEAR_PROBE, KNN)  # the backbone's features stay as built (or as pretrained)
KNN_METRICS = ("cosine", "euclidean")


@declares("scheme", END_TO_END, LINEAR_PROBE)
@dataclass(frozen=True)
class SchemeOptions(Options):
    """End-to-end training and linear probing have no options of their own (the optimizer's are theirs)."""


@declares("scheme", KNN)
@dataclass(frozen=True)
class KnnOptions(Options):
    k: Annotated[int, AtLeast(1)]  # neighbours that vote (MedMNIST+: 11)
    metric: Annotated[str, OneOf(KNN_METRICS)]  # cosine: similarity of the feature vectors | euclidean: distance
