"""results.tex: the sweep's main table as a booktabs LaTeX table (what it shows: docs/statistics.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gsa_exp.reporting import references as refs
from gsa_exp.reporting.tables import Summary, Table

METRIC_NAMES = {"test/acc": "Test accuracy", "test/auroc": "Test AUROC", "test/map_auroc": "Attention-map AUROC"}
_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def escape(text: str) -> str:
    """Text with LaTeX's special characters escaped (``resnet_v2`` -> ``resnet\\_v2``)."""
    return "".join(_SPECIAL.get(char, char) for char in str(text))


def _best(table: Table, dataset: str, rows: Sequence[Any], attentions: Sequence[str]) -> float | None:
    means = [
        round(cell.mean, 3)
        for row in rows
        for attention in attentions
        if (cell := table.cells.get((dataset, row, attention))) is not None and cell.mean is not None
    ]
    if not means:
        return None
    return min(means) if "loss" in table.metric else max(means)  # lower is better for losses


def _cell(table: Table, dataset: str, row: Any, attention: str, best: float | None) -> str:
    cell = table.cells.get((dataset, row, attention))
    if cell is None:
        return ""
    if cell.mean is None:
        return "--"
    text = f"{cell.mean:.3f}" if cell.std is None else f"{cell.mean:.3f} $\\pm$ {cell.std:.3f}"
    return f"\\textbf{{{text}}}" if best is not None and round(cell.mean, 3) == best else text


def render_latex(summary: Summary) -> str:
    """The whole results.tex: comment lines, then a ``table`` float holding the booktabs tabular."""
    tables = [table for table in summary.tables if table.metric in summary.metrics]
    groups = []  # (data set, its attentions in column order)
    for dataset in summary.datasets:
        attentions = list(dict.fromkeys(a for table in tables for d, a in table.columns if d == dataset))
        if attentions:
            groups.append((dataset, attentions))
    width = 1 + sum(len(attentions) for _d, attentions in groups)
    with_refs = summary.references and bool(refs.matching(d for d, _a in groups))
    lines = [
        "% results.tex, written by scripts/summarize.py from " + " ".join(str(summary.sweep.path).split()),
        "% Needs \\usepackage{booktabs} in the preamble (\\toprule, \\midrule, \\bottomrule, \\cmidrule).",
        "% Cells: mean $\\pm$ sample std over seeds; job counts and failures are in results.md.",
        "\\begin{table}[t]",
        "\\centering",
        "\\begin{tabular}{l" + "".join("c" * len(attentions) for _d, attentions in groups) + "}",
        "\\toprule",
    ]
    header, rules, column = [""], [], 2
    for dataset, attentions in groups:
        header.append(f"\\multicolumn{{{len(attentions)}}}{{c}}{{{escape(dataset)}}}")
        rules.append(f"\\cmidrule(lr){{{column}-{column + len(attentions) - 1}}}")
        column += len(attentions)
    lines += [" & ".join(header) + " \\\\", " ".join(rules)]
    lines.append(" & ".join(["Backbone"] + [escape(a) for _d, attentions in groups for a in attentions]) + " \\\\")
    for table in tables:
        title = escape(METRIC_NAMES.get(table.metric, table.metric))
        lines += ["\\midrule", f"\\multicolumn{{{width}}}{{l}}{{\\textit{{{title}}}}} \\\\"]
        rows = [row for row in summary.rows if any(key[1] == row for key in table.cells)]
        best = {dataset: _best(table, dataset, rows, attentions) for dataset, attentions in groups}
        for row in rows:
            cells = [_cell(table, dataset, row, a, best[dataset]) for dataset, attentions in groups for a in attentions]
            lines.append(" & ".join([escape(summary.row_labels[row])] + cells) + " \\\\")
        if with_refs:
            cells = []
            for dataset, attentions in groups:
                value = refs.reference(dataset, table.metric)
                cells.append(f"\\multicolumn{{{len(attentions)}}}{{c}}{{{'' if value is None else f'{value:.3f}'}}}")
            lines += ["\\addlinespace", " & ".join([f"\\textit{{{escape(refs.SOURCE)}}}$^\\dagger$"] + cells) + " \\\\"]
    names = [escape(METRIC_NAMES.get(table.metric, table.metric)) for table in tables]
    names = names[:1] + [name[:1].lower() + name[1:] for name in names[1:]]  # "Test accuracy and test AUROC"
    caption = (
        f"{' and '.join(names)}, mean $\\pm$ sample standard deviation over seeds; the best mean per data "
        "set and metric in bold."
    )
    if with_refs:
        caption += (
            f" $^\\dagger${escape(refs.SOURCE)}: published values ({escape(refs.SHORT_CITATION)}), "
            "one run each, for scale only."
        )
    lines += ["\\bottomrule", "\\end{tabular}", f"\\caption{{{caption}}}", "\\label{tab:results}", "\\end{table}"]
    return "\n".join(lines) + "\n"
