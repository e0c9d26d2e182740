"""k-nearest-neighbour voting on frozen features (``scheme=knn``), the way MedMNIST+ classifies with it.

MedMNIST+ (Doerrich et al. 2025) keeps the frozen backbone's features of every training image
and labels a test image by the majority of its k = 11 nearest ones (multi-label: each label by
the majority). The scores here are the votes themselves: for class c, the fraction of the k
neighbours of class c (multi-label: having label c), unweighted. Their arg-max is that majority
(ties go to the lower class index, as ``scipy.stats.mode`` breaks them), and a multi-label score
passes 0.5 exactly when the majority has the label, so accuracy is MedMNIST+'s; AUROC ranks the
k + 1 possible vote fractions (MedMNIST+ reports no AUC for k-NN). The bank is a buffer: a
checkpoint holds it, so evaluation needs no training data.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gsa_exp.data.splits import MULTICLASS

BANK_CHUNK = 65536  # training features compared at a time: bounds the similarity matrix's memory


class NeighbourVote(nn.Module):
    """A bank of training features and labels; ``scores`` votes among the k nearest of each query."""

    def __init__(self, *, k: int, metric: str, task: str, num_classes: int) -> None:
        super().__init__()
        self.k, self.metric, self.task, self.num_classes = k, metric, task, num_classes
        self.register_buffer("features", torch.empty(0, 0))
        self.register_buffer("labels", torch.empty(0, dtype=torch.long))
        self._pending: list[tuple[Tensor, Tensor]] = []  # batches added since the bank was last joined

    def clear(self) -> None:
        self._pending = []
        self.features = self.features.new_empty(0, 0)
        self.labels = self.labels.new_empty(0)

    def add(self, features: Tensor, labels: Tensor) -> None:
        """Training images' features (N x D) and labels (N, or N x L), in any order."""
        self._pending.append((features.detach().float(), labels.detach()))

    def _join(self) -> None:
        if not self._pending:
            return
        parts = ([self.features] if len(self.features) else []) + [features for features, _ in self._pending]
        labels = ([self.labels] if len(self.labels) else []) + [labels for _, labels in self._pending]
        self.features, self.labels = torch.cat(parts), torch.cat(labels)
        self._pending = []

    def __len__(self) -> int:
        self._join()
        return len(self.features)

    def scores(self, queries: Tensor) -> Tensor:
        """Vote fractions (queries x classes, or x labels) among each query's k nearest training images."""
        self._join()
        if len(self.features) < self.k:
            raise ValueError(
                f"k={self.k} neighbours, but the feature bank holds {len(self.features)} training images: "
                "lower the scheme's k or read more of the training split"
            )
        nearest = self._nearest(queries.detach().float())
        votes = self.labels[nearest]  # queries x k (x labels)
        if self.task == MULTICLASS:
            return F.one_hot(votes, self.num_classes).float().mean(dim=1)
        return votes.float().mean(dim=1)

    def _nearest(self, queries: Tensor) -> Tensor:
        """Indices of each query's k nearest bank rows (cosine: largest similarity; euclidean: smallest distance)."""
        cosine = self.metric == "cosine"
        if cosine:
            queries = F.normalize(queries, dim=1)
        best_values, best_indices = None, None
        for start in range(0, len(self.features), BANK_CHUNK):
            bank = self.features[start : start + BANK_CHUNK]
            closeness = queries @ F.normalize(bank, dim=1).T if cosine else -torch.cdist(queries, bank)
            values, indices = closeness.topk(min(self.k, len(bank)), dim=1)
            if best_values is not None:
                values, indices = torch.cat([best_values, values], 1), torch.cat([best_indices, indices + start], 1)
                values, order = values.topk(self.k, dim=1)
                indices = indices.gather(1, order)
            best_values, best_indices = values, indices
        return best_indices

    # The bank's size is the training split's (and the features' width the backbone's): a checkpoint's
    # buffers are taken as they are, and batches still pending are saved with the rest.
    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        self._join()
        super()._save_to_state_dict(destination, prefix, keep_vars)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        self._pending = []
        for name in ("features", "labels"):
            if prefix + name in state_dict:
                stored = state_dict[prefix + name]
                setattr(self, name, torch.empty(stored.shape, dtype=stored.dtype, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
