"""Names the config is checked against, kept free of heavy imports (checked before a run starts)."""

NONFINITE_POLICIES = ("stop", "skip")  # loss.nonfinite
METRIC_NAMES = ("acc", "bal_acc", "auroc", "f1")  # logged per stage: train/acc, val/acc, test/acc, ...
