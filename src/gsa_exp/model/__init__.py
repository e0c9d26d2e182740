"""The LightningModule and its metrics."""

from gsa_exp.model.classifier import ImageClassifier
from gsa_exp.model.metrics import classification_metrics, map_auroc

__all__ = ["ImageClassifier", "classification_metrics", "map_auroc"]
