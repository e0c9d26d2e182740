"""Reports over finished runs: sweep tables, statistics and plots (docs/statistics.md)."""
