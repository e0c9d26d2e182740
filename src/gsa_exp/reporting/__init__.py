"""Reports over finished runs: sweep tables and plots."""

from gsa_exp.reporting.jobs import Sweep, SweepError, load_sweep
from gsa_exp.reporting.plots import plot_summary
from gsa_exp.reporting.render import render_markdown, write_csv
from gsa_exp.reporting.summary import write_summary
from gsa_exp.reporting.tables import DEFAULT_METRICS, Summary, summarize

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
