"""Rendering a ``Summary`` as results.md and results.csv (columns: docs/statistics.md)."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from gsa_exp.durable import durable_open
from gsa_exp.reporting import comparison_report
from gsa_exp.reporting import references as refs
from gsa_exp.reporting.jobs import FAILED, FINISHED, KILLED, MULTIRUN_FILE, UNFINISHED
from gsa_exp.reporting.tables import DELTA_PAIR, Summary, Table

DELTA_ATTENTION = "delta(global-none)"  # the attention value of delta rows in results.csv
DELTA_HEADER = "Δ(global − none)"
CSV_COLUMNS = (
    "dataset",
    "backbone",
    "attention",
    "metric",
    "mean",
    "std",
    "n",
    "n_failed",
    "n_unfinished",
    "n_jobs",
    "variant",
    "setting",
    "scheme",
    "resolution",
    *comparison_report.CSV_COLUMNS,
)


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def _markdown_table(summary: Summary, table: Table) -> list[str]:
    header, layout = ["backbone"], []
    for dataset in summary.datasets:
        for column in [c for c in table.columns if c[0] == dataset]:
            header.append(f"{dataset}: {column[1]}")
            layout.append(("cell", dataset, column[1]))
        if table.has_delta(dataset):
            header.append(f"{dataset}: {DELTA_HEADER}")
            layout.append(("delta", dataset, None))
        if summary.references and refs.reference(dataset, table.metric) is not None:
            header.append(f"{dataset}: {refs.SOURCE}")
            layout.append(("reference", dataset, None))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in summary.rows:
        if not any(key[1] == row for key in table.cells):
            continue
        texts = [_escape(summary.row_labels[row])]
        for kind, dataset, attention in layout:
            if kind == "delta":
                texts.append(comparison_report.format_delta(table.delta(dataset, row)))
            elif kind == "reference":
                texts.append(f"{refs.reference(dataset, table.metric):.3f}")
            else:
                cell = table.cells.get((dataset, row, attention))
                texts.append("" if cell is None else cell.text())
        lines.append("| " + " | ".join(texts) + " |")
    return lines


def render_markdown(summary: Summary) -> str:
    """results.md: job counts, one table per metric, notes, and the failed or unfinished jobs."""
    sweep = summary.sweep
    states = Counter(job.state for job in sweep.jobs)
    shown = (FINISHED, FAILED, KILLED, UNFINISHED) if states[KILLED] else (FINISHED, FAILED, UNFINISHED)
    tally = ", ".join(f"{states[state]} {state}" for state in shown)
    counts = f"Job directories: {len(sweep.jobs)} ({tally})"
    if sweep.expected is not None:
        counts += f"; {MULTIRUN_FILE} describes {sweep.expected} jobs ({len(sweep.not_started)} not started)"
    lines = [
        "# Sweep summary",
        "",
        f"Sweep: `{sweep.path}`",
        "",
        counts + ".",
        "",
        "Cells: mean ± sample standard deviation (ddof=1) over the finished jobs (seeds), 3 decimals; "
        "n = jobs with a finite value; with n=1 only the mean is shown, with n=0 `—`. "
        "`k failed` / `k unfinished` count the cell's other jobs (listed at the end; killed jobs count as unfinished). "
        f"{DELTA_HEADER} = mean(global) − mean(none).",
    ]
    for table in summary.tables:
        lines += ["", f"## {table.metric}", ""] + _markdown_table(summary, table)
    if summary.references:
        lines += ["", refs.note(summary.datasets)]
    lines += [""] + comparison_report.markdown_section(summary.comparisons, summary.options, summary.metrics)
    if summary.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in summary.notes]
    lines += ["", "## Failed or unfinished jobs", ""]
    if summary.problems or sweep.not_started:
        lines += ["| job | cell | state | reason |", "|---|---|---|---|"]
        for job, state, reason in summary.problems:
            lines.append(f"| `{job.name}` | {_escape(job.cell_label)} | {state} | {_escape(reason)} |")
        for combination in sweep.not_started:
            lines.append(f"| (no directory) | `{_escape(combination)}` | not started | no job directory yet |")
    else:
        lines.append("None: every job finished with finite metrics.")
    return "\n".join(lines) + "\n"


def csv_rows(summary: Summary) -> list[dict[str, str]]:
    """The rows of results.csv."""
    rows = []
    stats = {(c.question.dataset, c.question.row, c.question.metric): c for c in summary.comparisons}
    for table in summary.tables:
        for dataset in summary.datasets:
            for row in summary.rows:
                scheme, resolution, backbone, variant, setting = row
                base = {
                    "dataset": dataset,
                    "backbone": backbone,
                    "metric": table.metric,
                    "variant": variant,
                    "setting": setting,
                    "scheme": scheme,
                    "resolution": resolution,
                }
                for column in [c for c in table.columns if c[0] == dataset]:
                    cell = table.cells.get((dataset, row, column[1]))
                    if cell is not None:
                        rows.append(
                            {
                                **base,
                                "attention": column[1],
                                "mean": comparison_report.csv_number(cell.mean),
                                "std": comparison_report.csv_number(cell.std),
                                "n": str(cell.n),
                                "n_failed": str(cell.n_failed),
                                "n_unfinished": str(cell.n_unfinished),
                                "n_jobs": str(cell.n_jobs),
                            }
                        )
                if table.has_delta(dataset) and all((dataset, row, a) in table.cells for a in DELTA_PAIR):
                    delta = {
                        **base,
                        "attention": DELTA_ATTENTION,
                        "mean": comparison_report.csv_number(table.delta(dataset, row)),
                    }
                    rows.append(delta)
                    found = stats.get((dataset, row, table.metric))
                    if found is not None:
                        delta.update(comparison_report.csv_fields(found))
                        rows += [
                            {**delta, **{key: "" for key in comparison_report.CSV_COLUMNS}, **fields}
                            for fields in comparison_report.seed_csv_fields(found)
                        ]
    return [{**dict.fromkeys(CSV_COLUMNS, ""), **row} for row in rows]


def write_csv(summary: Summary, path: str | Path) -> Path:
    path = Path(path)
    with durable_open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(csv_rows(summary))
    return path
