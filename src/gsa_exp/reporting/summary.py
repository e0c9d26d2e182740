"""Summarise a Hydra sweep (``outputs/multirun/<date>/<time>``) as tables, statistics and a bar chart.

Rows, cells, job states, the files and their columns: docs/statistics.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gsa_exp.durable import remove_abandoned_temp_files, write_text
from gsa_exp.reporting import latex
from gsa_exp.reporting.comparison import Options
from gsa_exp.reporting.jobs import Sweep, load_sweep
from gsa_exp.reporting.plots import plot_summary
from gsa_exp.reporting.render import render_markdown, write_csv
from gsa_exp.reporting.tables import DEFAULT_METRICS, summarize

RESULT_FILES = {"markdown": "results.md", "csv": "results.csv", "plot": "results.png", "latex": "results.tex"}


def write_summary(
    sweep_dir: str | Path | Sweep,
    metrics: Sequence[str] = DEFAULT_METRICS,
    out_dir: str | Path | None = None,
    options: Options | None = None,
    references: bool = False,
) -> dict[str, Path]:
    """Read a sweep (or take one read already) and write results.md, results.csv, results.png and results.tex
    (each written durably); returns {kind: path}."""
    sweep = sweep_dir if isinstance(sweep_dir, Sweep) else load_sweep(sweep_dir)
    summary = summarize(sweep, metrics, options, references)
    target = Path(out_dir) if out_dir is not None else sweep.path
    remove_abandoned_temp_files(target, recursive=False)  # of a summary killed while writing
    paths = {kind: target / name for kind, name in RESULT_FILES.items()}
    write_text(paths["markdown"], render_markdown(summary))
    write_csv(summary, paths["csv"])
    plot_summary(summary, paths["plot"])
    write_text(paths["latex"], latex.render_latex(summary))
    return paths
