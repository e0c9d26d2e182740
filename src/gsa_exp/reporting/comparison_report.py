"""How the global-vs-none statistics read in results.md (a table and one sentence per row) and results.csv."""

from __future__ import annotations

import math
from collections.abc import Sequence

from gsa_exp.reporting import statistics as st
from gsa_exp.reporting.comparison import STAT_METRICS, Comparison, Options

SECTION = "Statistics: global vs none"
# Added to results.csv after the summary's own columns; empty where they do not apply.
CSV_COLUMNS = (
    "seed",
    "n_pairs",
    "paired_delta",
    "paired_ci_low",
    "paired_ci_high",
    "paired_p",
    "image_delta",
    "image_ci_low",
    "image_ci_high",
    "image_p",
    "image_seeds",
    "n_images",
    "resamples",
    "delong_p",
    "stat_note",
)


def format_delta(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:+.3f}"


def format_interval(low: float | None, high: float | None) -> str:
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return "—"
    return f"[{low:+.3f}, {high:+.3f}]"


def format_p(p: float | None) -> str:
    """3 decimals; ``< 0.001`` below that, ``0`` only for the exact zero of identical differences."""
    if p is None or not math.isfinite(p):
        return "—"
    if p == 0:
        return "0"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _p_phrase(p: float) -> str:
    text = format_p(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def verdict(p: float | None, alpha: float) -> str:
    if p is None or not math.isfinite(p):
        return "not tested"
    return f"significant at {alpha:g}" if p < alpha else f"not significant at {alpha:g}"


def _per_seed(comparison: Comparison) -> str:
    parts = []
    for pair in comparison.pairs:
        if pair.images is None:
            continue
        text = (
            f"seed {pair.seed}: {format_delta(pair.images.delta)} "
            f"{format_interval(pair.images.ci_low, pair.images.ci_high)}, {_p_phrase(pair.images.p)}"
        )
        if pair.delong is not None:
            text += f", DeLong {_p_phrase(pair.delong.p)}"
        parts.append(text)
    return "; ".join(parts) or "—"


def sentence(comparison: Comparison, options: Options) -> str:
    """``resnet on pneumoniamnist: test/auroc +0.031 [+0.012, +0.050], p = 0.010 (paired over 3 seeds): ...``."""
    q, seeds = comparison.question, comparison.over_seeds
    head = f"{q.row_label} on {q.dataset}: {q.metric}"
    if seeds.mean is None:
        text = f"{head}: no seed pair, so no difference over seeds."
    elif seeds.p is None:
        text = (
            f"{head} {format_delta(seeds.mean)} ({seeds.n} seed pair): no interval or p-value over seeds "
            "(needs at least 2 pairs), not tested."
        )
    else:
        how = f"paired over {seeds.n} seeds" + (f"; {seeds.note}" if seeds.note else "")
        text = (
            f"{head} {format_delta(seeds.mean)} {format_interval(seeds.ci_low, seeds.ci_high)}, "
            f"{_p_phrase(seeds.p)} ({how}): {verdict(seeds.p, options.alpha)}."
        )
    images = comparison.images
    if images is not None:
        pooled = f"mean of {len(comparison.image_seeds)} seed pairs, " if len(comparison.image_seeds) > 1 else ""
        text += (
            f" Over {comparison.n_images} test images ({pooled}bootstrap, {comparison.resamples} resamples): "
            f"{format_delta(images.delta)} {format_interval(images.ci_low, images.ci_high)}, "
            f"{_p_phrase(images.p)}: {verdict(images.p, options.alpha)}"
        )
        if comparison.delong is not None:
            text += f"; DeLong {_p_phrase(comparison.delong.p)}: {verdict(comparison.delong.p, options.alpha)}"
        text += "."
    elif comparison.pairs:
        text += " Not tested over test images (see the notes)."
    return text


def markdown_section(comparisons: Sequence[Comparison], options: Options, requested: Sequence[str]) -> list[str]:
    """The section's lines: method, one table row per comparison, the sentences, and the notes."""
    tail = 100 * (1 - options.confidence) / 2
    lines = [
        f"## {SECTION}",
        "",
        f"Δ = global − none. *Over seeds*: jobs with the same `seed` are paired; Δ = mean of the paired "
        f"differences of the logged metric, {100 * options.confidence:g} % CI from the t distribution "
        "(pairs − 1 degrees of freedom), p from the two-sided paired t-test; with fewer than 2 pairs there is "
        "no CI and no p (`—`); identical differences give p = 1 when they are 0, p = 0 otherwise. "
        "*Over test images*: each seed pair is re-scored from its `predictions_test.csv` and `targets_test.csv` "
        f"(same test images required) and the images are resampled ({options.resamples} paired bootstrap "
        f"resamples, seed {options.seed}): percentile CI ({tail:g}–{100 - tail:g} %) and two-sided "
        "p = 2 · min(P(Δ* ≤ 0), P(Δ* ≥ 0)), each tail (k + 1) / (B + 1). The table's over-images columns "
        "resample the images once for all seed pairs and test the mean Δ over seeds (the models held fixed: test-set "
        "variation only); per-seed results follow. DeLong: AUROC of binary tasks, correlated ROC curves "
        f"(Sun & Xu 2014), per seed and for the mean over seeds. Significant: p < {options.alpha:g}, "
        "no correction for multiple comparisons.",
        "",
    ]
    if not comparisons:
        asked = [metric for metric in requested if metric in STAT_METRICS]
        if not asked:
            lines.append(f"None: the requested metrics include neither {' nor '.join(STAT_METRICS)}.")
        else:
            lines.append("None: no backbone x data set has jobs with both attention=none and attention=global.")
        return lines
    lines += [
        "| backbone | data set | metric | seed pairs | Δ over seeds | 95 % CI (t) | p (paired t) "
        "| Δ over test images | 95 % CI (bootstrap) | p (bootstrap) | p (DeLong) | per seed over test images |",
        "|" + "---|" * 12,
    ]
    for c in comparisons:
        q, seeds, images = c.question, c.over_seeds, c.images
        cells = [
            q.row_label.replace("|", "\\|"),
            q.dataset,
            q.metric,
            str(seeds.n),
            format_delta(seeds.mean),
            format_interval(seeds.ci_low, seeds.ci_high),
            format_p(seeds.p),
            format_delta(images.delta) if images else "—",
            format_interval(images.ci_low, images.ci_high) if images else "—",
            format_p(images.p) if images else "—",
            format_p(c.delong.p) if c.delong else "—",
            _per_seed(c),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "In words:", ""] + [f"- {sentence(c, options)}" for c in comparisons]
    notes = [(c, note) for c in comparisons for note in c.notes]
    if notes:
        lines += ["", "Missing or unusable inputs:", ""]
        lines += [f"- {c.question.row_label} on {c.question.dataset}, {c.question.metric}: {note}" for c, note in notes]
    return lines


def csv_number(value: float | int | None) -> str:
    return "" if value is None or (isinstance(value, float) and not math.isfinite(value)) else repr(value)


def _estimate_fields(estimate: st.Estimate | None) -> dict[str, str]:
    if estimate is None:
        return {}
    return {
        "image_delta": csv_number(estimate.delta),
        "image_ci_low": csv_number(estimate.ci_low),
        "image_ci_high": csv_number(estimate.ci_high),
        "image_p": csv_number(estimate.p),
    }


def csv_fields(comparison: Comparison) -> dict[str, str]:
    """The extra columns of the cell's delta row: over seeds, and the pooled over-images test."""
    seeds = comparison.over_seeds
    fields = {
        "n_pairs": str(seeds.n),
        "paired_delta": csv_number(seeds.mean),
        "paired_ci_low": csv_number(seeds.ci_low),
        "paired_ci_high": csv_number(seeds.ci_high),
        "paired_p": csv_number(seeds.p),
        "stat_note": "; ".join(([seeds.note] if seeds.note else []) + comparison.notes),
    }
    if comparison.images is not None:
        fields.update(_estimate_fields(comparison.images))
        fields.update(
            image_seeds=";".join(str(s) for s in comparison.image_seeds),
            n_images=str(comparison.n_images),
            resamples=str(comparison.resamples),
        )
    if comparison.delong is not None:
        fields["delong_p"] = csv_number(comparison.delong.p)
    return fields


def seed_csv_fields(comparison: Comparison) -> list[dict[str, str]]:
    """One set of extra columns per seed pair re-scored over test images (mean = the logged Δ of that seed)."""
    rows = []
    for pair in comparison.pairs:
        if pair.images is None:
            continue
        fields = {
            "seed": str(pair.seed),
            "mean": csv_number(pair.logged_delta),
            "n_pairs": "1",
            "image_seeds": str(pair.seed),
            "n_images": str(pair.n_images),
            "resamples": str(comparison.resamples),
            **_estimate_fields(pair.images),
        }
        if pair.delong is not None:
            fields["delong_p"] = csv_number(pair.delong.p)
        rows.append(fields)
    return rows
