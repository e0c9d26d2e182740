"""Fabricated sweeps for the summary tests: job directories as Hydra and train.py leave them."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TRACEBACK = 'Traceback (most recent call last):\n  File "train.py", line 1\nRuntimeError: CUDA out of memory\n'

# (backbone, attention) -> test/acc per seed 0, 1, 2; None = the job failed (no metrics.json).
ACC = {
    ("vgg", "none"): [0.70, 0.74, 0.78],
    ("vgg", "global"): [0.75, 0.77, None],
    ("resnet", "none"): [0.80, 0.82, 0.84],
    ("resnet", "global"): [0.85, 0.88, 0.91],
}
AUROC_SHIFT = 0.1  # test/auroc = test/acc + 0.1
MAP = {"vgg": [0.5, 0.9], "resnet": [0.6, 0.7, 0.8]}  # test/map_auroc of the global jobs


def make_job(
    sweep: Path,
    number: int,
    backbone: str,
    attention: str,
    seed: int,
    metrics: dict | None = None,
    dataset: str = "synthetic",
    variant: str | None = None,
    extra: tuple[str, ...] = (),
    files: dict[str, str] | None = None,
    scheme: str | None = None,
    image_size: int = 32,
) -> Path:
    """A job directory as Hydra and train.py leave it (``scheme`` None: a config from before the schemes)."""
    overrides = [f"backbone={backbone}", f"attention={attention}", f"seed={seed}", *extra]
    job = sweep / f"{number}_{','.join(sorted(overrides))}"
    (job / ".hydra").mkdir(parents=True)
    variant_line = f"  variant: {variant}\n" if variant else ""
    scheme_lines = f"scheme:\n  name: {scheme}\n" if scheme else ""
    (job / ".hydra" / "config.yaml").write_text(
        f"task_name: train\nseed: {seed}\ndataset:\n  name: {dataset}\n  image_size: {image_size}\n"
        f"backbone:\n  name: {backbone}\n{variant_line}attention:\n  name: {attention}\n"
        "  bank:\n    seed: ${seed}\n" + scheme_lines
    )
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {item}\n" for item in overrides))
    if metrics is not None:  # a finished job: its metrics, and the status the job's end records
        (job / "metrics.json").write_text(json.dumps(metrics))
        (job / "status.json").write_text(json.dumps({"status": "completed"}))
    for name, text in (files or {}).items():
        (job / name).write_text(text)
    return job


def grid_metrics(backbone: str, attention: str, seed: int) -> dict | None:
    acc = ACC[(backbone, attention)][seed]
    if acc is None:
        return None
    metrics = {"test/acc": acc, "test/auroc": acc + AUROC_SHIFT, "val/acc": 0.5, "test/loss": 0.3}
    if attention == "global":
        metrics["test/map_auroc"] = MAP[backbone][seed]
    return metrics


def fabricated_sweep(tmp_path: Path) -> Path:
    """2 backbones x 2 attentions x 3 seeds; job vgg/global/seed 2 failed with a traceback."""
    root = tmp_path / "multirun" / "2026-11-25" / "22-14-05"
    number = 0
    for backbone in ("resnet", "vgg"):  # written in the "wrong" order: rows must follow the paper's
        for attention in ("global", "none"):
            for seed in range(3):
                failed = ACC[(backbone, attention)][seed] is None
                files = {"error.txt": TRACEBACK}
                make_job(
                    root,
                    number,
                    backbone,
                    attention,
                    seed,
                    grid_metrics(backbone, attention, seed),
                    files=files if failed else None,
                )
                number += 1
    return root


def table(markdown: str, title: str) -> list[str]:
    """The lines of the markdown table under '## title'."""
    lines = markdown.splitlines()
    start = lines.index(f"## {title}") + 2
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


def expected_cell(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f} (n={len(values)})"


def image_files(scores: np.ndarray, labels: np.ndarray) -> dict[str, str]:
    """predictions_test.csv and targets_test.csv as train.py writes them."""
    labels = labels.reshape(len(labels), -1)
    return {
        "predictions_test.csv": "".join(
            f"{i}," + ",".join(f"{v:.8g}" for v in row) + "\n" for i, row in enumerate(scores)
        ),
        "targets_test.csv": "".join(f"{i}," + ",".join(str(v) for v in row) + "\n" for i, row in enumerate(labels)),
    }


def image_job(
    sweep: Path,
    number: int,
    backbone: str,
    attention: str,
    seed: int,
    scores: np.ndarray,
    labels: np.ndarray,
    dataset: str,
    files: bool = True,
) -> Path:
    """A finished job whose metrics.json holds the accuracy and AUROC of its per-image scores."""
    flat = labels.reshape(len(labels), -1)[:, 0]
    acc = float((scores.argmax(axis=1) == flat).mean())
    auroc = (
        roc_auc_score(flat, scores[:, 1])
        if scores.shape[1] == 2
        else float(np.mean([roc_auc_score(flat == c, scores[:, c]) for c in range(scores.shape[1])]))
    )
    metrics = {"test/acc": acc, "test/auroc": float(auroc)}
    return make_job(
        sweep,
        number,
        backbone,
        attention,
        seed,
        metrics,
        dataset=dataset,
        extra=(f"dataset={dataset}",),
        files=image_files(scores, labels) if files else None,
    )


def softmax_scores(labels: np.ndarray, strength: float, rng: np.random.Generator, classes: int = 2) -> np.ndarray:
    logits = rng.normal(0, 1, (len(labels), classes))
    logits[np.arange(len(labels)), labels] += strength
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def fabricated_image_sweep(tmp_path: Path) -> Path:
    """pneumoniamnist (binary, 100 test images): resnet global clearly better than none; vgg global = none
    (identical files); densenet seed 1 on other targets, seed 2 global without files. octmnist (4 classes): resnet."""
    rng = np.random.default_rng(0)
    root = tmp_path / "multirun" / "2026-12-01" / "10-00-00"
    labels = rng.integers(0, 2, 100)
    number = 0
    for seed in range(3):
        for attention, strength in (("none", 0.3), ("global", 3.0)):
            image_job(
                root, number, "resnet", attention, seed, softmax_scores(labels, strength, rng), labels, "pneumoniamnist"
            )
            number += 1
        same = softmax_scores(labels, 1.0, rng)
        for attention in ("none", "global"):
            image_job(root, number, "vgg", attention, seed, same, labels, "pneumoniamnist")
            number += 1
        for attention in ("none", "global"):
            other = labels.copy()
            if seed == 1 and attention == "global":
                other[:5] = 1 - other[:5]
            image_job(
                root,
                number,
                "densenet",
                attention,
                seed,
                softmax_scores(other, 1.0, rng),
                other,
                "pneumoniamnist",
                files=not (seed == 2 and attention == "global"),
            )
            number += 1
    classes = rng.integers(0, 4, 60)
    for seed in range(2):
        for attention, strength in (("none", 0.5), ("global", 2.5)):
            image_job(
                root, number, "resnet", attention, seed, softmax_scores(classes, strength, rng, 4), classes, "octmnist"
            )
            number += 1
    return root
