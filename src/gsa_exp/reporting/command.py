"""Tables, statistics and a bar chart of a sweep: ``gsa-summarize outputs/multirun/<date>/<time>``
(or ``python scripts/summarize.py ...``).

Writes results.md, results.csv, results.png and results.tex into the sweep directory (or
--out) and prints results.md. results.md ends with the statistics of global vs none: paired
over seeds, and over test images where the jobs left predictions_test.csv and targets_test.csv.
See docs/statistics.md for what the cells and columns mean.
"""

from __future__ import annotations

import argparse
import sys

from gsa_exp.reporting.comparison import Options
from gsa_exp.reporting.jobs import SweepError, load_sweep
from gsa_exp.reporting.summary import write_summary
from gsa_exp.reporting.tables import DEFAULT_METRICS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="summarize", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sweep_dir", metavar="SWEEP_DIR", help="a sweep directory, e.g. outputs/multirun/<date>/<time>")
    parser.add_argument(
        "--metrics",
        nargs="+",
        default=list(DEFAULT_METRICS),
        metavar="METRIC",
        help=f"metrics to tabulate and plot, as logged (default: {' '.join(DEFAULT_METRICS)})",
    )
    parser.add_argument("--out", metavar="DIR", default=None, help="write the files here instead of SWEEP_DIR")
    parser.add_argument(
        "--references",
        action="store_true",
        help="add MedMNIST v2's published ResNet-18 (28) test ACC/AUC for the data sets that have one",
    )
    parser.add_argument(
        "--resamples",
        type=int,
        default=Options.resamples,
        metavar="B",
        help=f"bootstrap resamples over test images (default: {Options.resamples})",
    )
    parser.add_argument(
        "--bootstrap-seed",
        type=int,
        default=Options.seed,
        metavar="SEED",
        help=f"seed of the bootstrap's random generator (default: {Options.seed})",
    )
    args = parser.parse_args(argv)
    if args.resamples < 1:
        parser.error(f"--resamples must be >= 1, got {args.resamples}")
    options = Options(resamples=args.resamples, seed=args.bootstrap_seed)
    try:
        sweep = load_sweep(args.sweep_dir)
    except SweepError as exc:
        print(f"summarize.py: error: {exc}", file=sys.stderr)
        return 2
    for warning in sweep.warnings:
        print(f"summarize.py: warning: {warning}", file=sys.stderr)
    paths = write_summary(sweep, metrics=args.metrics, out_dir=args.out, options=options, references=args.references)
    print(paths["markdown"].read_text())
    for path in paths.values():
        print(f"wrote {path}")
    return 0
