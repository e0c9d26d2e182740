#!/usr/bin/env python
"""Tables and a bar chart of a sweep: ``python scripts/summarize.py outputs/multirun/<date>/<time>``.

Writes results.md, results.csv and results.png into the sweep directory (or --out) and
prints results.md. See gsa_exp.reporting.summary for what the cells and columns mean.
"""

from __future__ import annotations

import argparse
import sys

from gsa_exp.reporting.summary import DEFAULT_METRICS, SweepError, write_summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", metavar="SWEEP_DIR", help="a sweep directory, e.g. outputs/multirun/<date>/<time>")
    parser.add_argument(
        "--metrics",
        nargs="+",
        default=list(DEFAULT_METRICS),
        metavar="METRIC",
        help=f"metrics to tabulate and plot, as logged (default: {' '.join(DEFAULT_METRICS)})",
    )
    parser.add_argument("--out", metavar="DIR", default=None, help="write the files here instead of SWEEP_DIR")
    args = parser.parse_args(argv)
    try:
        paths = write_summary(args.sweep_dir, metrics=args.metrics, out_dir=args.out)
    except SweepError as exc:
        print(f"summarize.py: error: {exc}", file=sys.stderr)
        return 2
    print(paths["markdown"].read_text())
    for path in paths.values():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
