"""Summarise a Hydra sweep (``outputs/multirun/<date>/<time>``) as tables and a bar chart.

Every job directory of the sweep (a sub-directory holding ``.hydra/``) is read: its
composed config (``.hydra/config.yaml``: ``dataset.name``, ``backbone.name``,
``backbone.variant``, ``attention.name``, ``seed``), its override list
(``.hydra/overrides.yaml``) and, when it finished, its ``metrics.json``. No job is ever
dropped silently: a job counts in its cell as finished, failed or unfinished, and every job
that did not give a usable value is listed with the reason.

Grouping
    Rows are backbones (googlenet, vgg, resnet, densenet, then the others alphabetically).
    When one backbone appears with several ``backbone.variant`` values, each variant gets its
    own row (``resnet (resnet50)``). When the sweep varies an override other than the data
    set, backbone, attention and seed (``trainer.max_epochs=2,10``), that setting is added to
    the row label (``resnet [trainer.max_epochs=10]``), so runs that differ in more than the
    seed are never pooled. Columns are data set x attention (none, global, local, static,
    then the others alphabetically), followed per data set by Δ(global − none) when both
    columns exist.

Cells
    ``mean ± std (n=N)`` over the finished jobs of the cell (in practice, the seeds), with the
    sample standard deviation (ddof=1), 3 decimals. With n=1 the standard deviation is not
    defined: the cell shows the mean alone, ``0.912 (n=1)``; with n=0 it shows ``—``. Jobs of
    the cell without a usable value are counted after n: ``(n=2, 1 failed, 1 unfinished)``.
    Δ(global − none) is the difference of the two means, signed (``+0.020``).

Job states
    * finished: completed, the one definition ``skip_completed`` uses too
      (``gsa_exp.run_state.completion``): ``status.json`` says ``completed`` and ``metrics.json``
      is a readable JSON object. A finished job whose value of a metric is missing or not
      finite (NaN, inf) counts as *failed* in that metric's cells.
    * failed: not completed, with a failure signal: ``error.txt`` in the job directory, a
      ``status.json`` whose ``status`` is not running/completed (or says completed without
      metrics), or a ``failed`` line for the job in the sweep's optional
      ``sweep_status.jsonl``. The reason is the first non-empty line of the error (for a
      Python traceback, its last line: the exception). An unreadable ``metrics.json`` or
      ``.hydra/config.yaml`` is a failure too (and a warning on stderr).
    * killed: ``status.json`` says ``running`` but its process is gone (same host) or its
      heartbeat is stale (``gsa_exp.run_state.why_killed``). Counted with the unfinished jobs
      in the cells: a ``skip_completed=true`` relaunch resumes it from its ``last.ckpt``.
    * unfinished: not completed and no failure signal (still running, or a ``metrics.json``
      whose run never recorded its end).
    * not started: when ``multirun.yaml`` describes a basic-sweeper grid, the override
      combinations that have no job directory yet are counted and listed.

Metric tables
    One per requested metric (default ``test/acc`` and ``test/auroc``; every column is shown),
    then the optional metrics that some job logged (``test/map_auroc``: the attention map
    scored against the synthetic data set's ground-truth region). An optional metric, requested
    or not, only gets the columns (data set x attention) in which a finished job logged it.

Files (written into the sweep directory, or ``out_dir``)
    ``results.md``
        A header with the job counts, one table per metric, notes, and the section
        "Failed or unfinished jobs" (job directory, cell, state, reason).
    ``results.csv``
        Long ("tidy") format, one row per (dataset, backbone, variant, setting, attention,
        metric) that has jobs, plus one delta row per (dataset, backbone, variant, setting,
        metric) where both global and none have jobs. Columns:

        ============ =========================================================================
        dataset      ``dataset.name``
        backbone     ``backbone.name``
        attention    ``attention.name``; ``delta(global-none)`` on delta rows
        metric       the metric key as logged (``test/acc``)
        mean         mean over the finished jobs; on delta rows mean(global) − mean(none);
                     empty when there is none
        std          sample standard deviation (ddof=1); empty when n < 2 and on delta rows
        n            jobs with a finite value (empty on delta rows)
        n_failed     jobs of the cell that failed or gave no finite value for this metric
        n_unfinished jobs of the cell without metrics.json and without a failure signal
        n_jobs       job directories in the cell (n + n_failed + n_unfinished)
        variant      ``backbone.variant`` (empty when the config has none)
        setting      the sweep's other varying overrides for these jobs (usually empty)
        ============ =========================================================================

        Then the statistics of global vs none (``comparison_report.CSV_COLUMNS``), filled on
        the delta rows of ``test/acc`` and ``test/auroc`` (empty ``seed``), and on one more
        delta row per seed pair re-scored over test images (``seed`` set; ``mean`` = that
        seed's logged Δ):

        ============== =======================================================================
        seed           the seed of a per-seed delta row (empty on the cell's delta row)
        n_pairs        seed pairs (none and global jobs with the same seed, both finite)
        paired_delta   mean of the paired differences (equals ``mean`` when every job paired)
        paired_ci_low  95 % t interval of paired_delta (empty with fewer than 2 pairs)
        paired_ci_high
        paired_p       two-sided paired t-test p-value (empty with fewer than 2 pairs)
        image_delta    Δ re-computed from the per-image files (cell row: mean over image_seeds)
        image_ci_low   bootstrap percentile interval over test images
        image_ci_high
        image_p        two-sided bootstrap p-value over test images
        image_seeds    the seeds re-scored (``;``-separated)
        n_images       test images
        resamples      bootstrap resamples
        delong_p       DeLong's test of the AUROC difference (binary tasks, test/auroc only)
        stat_note      why a statistic is missing (unpaired seeds, missing or differing files)
        ============== =======================================================================

        Numbers are written at full precision; empty fields read as NaN in pandas.
    ``results.tex``
        The metric tables of the requested metrics as a booktabs LaTeX table (``latex``):
        rows backbones, columns data set x attention, mean ± std, the best mean per data set
        and metric in bold.
    ``results.png``
        Grouped bars, one panel per data set (columns) and per requested metric (rows), one
        group per backbone row, one bar per attention, error bars = std (none when n < 2),
        the y axis from 0, each bar labelled with its mean while a panel has at most 16 bars.

Statistics: global vs none
    A section of results.md, one row per backbone x data set x metric (``test/acc``,
    ``test/auroc``, when requested) that has both none and global jobs: Δ paired over seeds
    (t interval, paired t-test), Δ over test images from the jobs' ``predictions_test.csv``
    and ``targets_test.csv`` (paired bootstrap; DeLong for binary AUROC), and a sentence
    saying whether each difference is significant at 0.05. What is computed and how:
    ``comparison`` and ``statistics``; what is missing is listed under the table.

References
    With ``references=True`` (``summarize.py --references``; off by default), the tables of
    results.md get a column per data set with MedMNIST v2's published ResNet-18 (28) test
    ACC/AUC, and results.tex a row (``references``), for the data sets that have one.

Modules
    ``jobs`` reads the job directories (``grid``: the jobs multirun.yaml describes), ``tables``
    builds the cells and the statistics into a ``Summary``, ``render`` writes results.md and
    results.csv, ``plots`` results.png, ``latex`` results.tex; this module ties them together.
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
    target.mkdir(parents=True, exist_ok=True)
    remove_abandoned_temp_files(target, recursive=False)  # of a summary killed while writing
    paths = {kind: target / name for kind, name in RESULT_FILES.items()}
    write_text(paths["markdown"], render_markdown(summary))
    write_csv(summary, paths["csv"])
    plot_summary(summary, paths["plot"])
    write_text(paths["latex"], latex.render_latex(summary))
    return paths
