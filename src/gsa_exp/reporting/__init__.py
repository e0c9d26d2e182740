"""Reports over finished runs: sweep tables and plots."""

from gsa_exp.reporting.summary import (
    DEFAULT_METRICS,
    Summary,
    Sweep,
    SweepError,
    load_sweep,
    plot_summary,
    render_markdown,
    summarize,
    write_csv,
    write_summary,
)

__all__ = [
    "DEFAULT_METRICS",
    "Summary",
    "Sweep",
    "SweepError",
    "load_sweep",
    "plot_summary",
    "render_markdown",
    "summarize",
    "write_csv",
    "write_summary",
]
