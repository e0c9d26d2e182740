"""results.png: the requested metrics of a ``Summary`` as grouped bars, one panel per metric x data set."""

from __future__ import annotations

import math
from pathlib import Path

from gsa_exp.durable import save_figure
from gsa_exp.reporting.tables import Summary


def plot_summary(summary: Summary, path: str | Path) -> Path:
    """results.png: grouped bars (backbone groups, one bar per attention, std error bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    tables = [table for table in summary.tables if table.metric in summary.metrics]
    attentions = list(dict.fromkeys(a for table in tables for _d, a in table.columns))
    colours = {a: plt.get_cmap("tab10")(i % 10) for i, a in enumerate(attentions)}
    n_rows, n_cols = len(tables), max(1, len(summary.datasets))
    width = max(4.5, 0.5 + 0.35 * len(summary.rows) * max(1, len(attentions)))
    figure, axes = plt.subplots(n_rows, n_cols, figsize=(width * n_cols, 3.4 * n_rows), squeeze=False)
    for i, table in enumerate(tables):
        for j, dataset in enumerate(summary.datasets or ["(no data set)"]):
            axis = axes[i][j]
            shown = [a for d, a in table.columns if d == dataset]
            bar = 0.8 / max(1, len(shown))
            annotate = len(shown) * len(summary.rows) <= 16
            tops: list[float] = []
            for k, attention in enumerate(shown):
                cells = [table.cells.get((dataset, row, attention)) for row in summary.rows]
                means = [math.nan if c is None or c.mean is None else c.mean for c in cells]
                errors = [0.0 if c is None or c.std is None else c.std for c in cells]
                offsets = [r + (k - (len(shown) - 1) / 2) * bar for r in range(len(summary.rows))]
                bars = axis.bar(offsets, means, bar, yerr=errors, capsize=2, color=colours[attention], label=attention)
                if annotate:
                    axis.bar_label(
                        bars,
                        labels=["" if math.isnan(m) else f"{m:.3f}" for m in means],
                        label_type="center",
                        fontsize=7,
                        rotation=90,
                        color="white",
                    )
                tops += [m + e for m, e in zip(means, errors) if not math.isnan(m)]
            if tops:
                axis.set_ylim(0.0, max(max(tops) * 1.25, 1e-6))  # room for the legend above the bars
            else:
                axis.text(0.5, 0.5, "no finished job", ha="center", va="center", transform=axis.transAxes)
            axis.set_xlim(-0.5, max(1, len(summary.rows)) - 0.5)
            axis.set_xticks(range(len(summary.rows)))
            axis.set_xticklabels([summary.row_labels[row] for row in summary.rows], rotation=20, ha="right")
            axis.set_title(f"{dataset}: {table.metric}", fontsize=10)
            axis.set_ylabel(table.metric)
            axis.grid(axis="y", alpha=0.3)
            if shown:
                axis.legend(fontsize=8, ncol=len(shown), loc="upper right")
    figure.tight_layout()
    save_figure(figure, path, dpi=110)
    plt.close(figure)
    return path
