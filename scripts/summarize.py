#!/usr/bin/env python
"""Tables, statistics and a bar chart of a sweep: ``python scripts/summarize.py outputs/multirun/<date>/<time>``.

The same as the installed ``gsa-summarize``; see gsa_exp.reporting.command.
"""

from __future__ import annotations

import sys

from gsa_exp.reporting.command import main

if __name__ == "__main__":
    sys.exit(main())
