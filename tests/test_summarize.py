"""Sweep summaries (scripts/summarize.py): tables, CSV, plot and the failed-job report on fabricated sweeps."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from conftest import run_script
from fabricated_sweeps import PNG_MAGIC, expected_cell, make_job, table

from gsa_exp.reporting.jobs import SweepError, load_sweep
from gsa_exp.reporting.render import csv_rows, render_markdown
from gsa_exp.reporting.summary import write_summary
from gsa_exp.reporting.tables import summarize


def test_tables_hold_mean_std_n_and_delta(sweep: Path):
    markdown = render_markdown(summarize(load_sweep(sweep)))
    acc = table(markdown, "test/acc")
    assert acc[0] == "| backbone | synthetic: none | synthetic: global | synthetic: Δ(global − none) |"
    # By hand: vgg none (0.70, 0.74, 0.78) -> 0.740 ± 0.040; vgg global (0.75, 0.77) -> 0.760 ± 0.014
    # (sqrt(0.0002) = 0.01414) with the third seed failed; Δ = 0.760 - 0.740 = +0.020.
    assert acc[2] == "| vgg | 0.740 ± 0.040 (n=3) | 0.760 ± 0.014 (n=2, 1 failed) | +0.020 |"
    # resnet none (0.80, 0.82, 0.84) -> 0.820 ± 0.020; global (0.85, 0.88, 0.91) -> 0.880 ± 0.030; Δ +0.060.
    assert acc[3] == "| resnet | 0.820 ± 0.020 (n=3) | 0.880 ± 0.030 (n=3) | +0.060 |"
    assert len(acc) == 4  # header, rule, vgg before resnet (the paper's order), nothing else
    auroc = table(markdown, "test/auroc")
    assert auroc[2] == "| vgg | 0.840 ± 0.040 (n=3) | 0.860 ± 0.014 (n=2, 1 failed) | +0.020 |"
    assert auroc[3] == "| resnet | 0.920 ± 0.020 (n=3) | 0.980 ± 0.030 (n=3) | +0.060 |"
    assert expected_cell([0.85, 0.88, 0.91]) == "0.880 ± 0.030 (n=3)"  # the hand values agree with statistics
    # The map table only has the variant that logs a map: vgg (0.5, 0.9) -> 0.700 ± 0.283 (sqrt(0.08)).
    assert table(markdown, "test/map_auroc") == [
        "| backbone | synthetic: global |",
        "|---|---|",
        "| vgg | 0.700 ± 0.283 (n=2, 1 failed) |",
        "| resnet | 0.700 ± 0.100 (n=3) |",
    ]
    assert markdown.index("## test/acc") < markdown.index("## test/auroc") < markdown.index("## test/map_auroc")
    assert "Job directories: 12 (11 finished, 1 failed, 0 unfinished)." in markdown


def test_failed_job_is_marked_and_listed_with_its_error(sweep: Path):
    markdown = render_markdown(summarize(load_sweep(sweep)))
    section = table(markdown, "Failed or unfinished jobs")
    assert section[0] == "| job | cell | state | reason |"
    assert section[2:] == [
        "| `8_attention=global,backbone=vgg,seed=2` | synthetic / vgg / global | failed "
        "| error.txt: RuntimeError: CUDA out of memory |"
    ]


def test_csv_is_tidy_with_delta_rows(sweep: Path, tmp_path: Path):
    paths = write_summary(sweep, out_dir=tmp_path / "report")
    with paths["csv"].open() as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames[:8] == ["dataset", "backbone", "attention", "metric", "mean", "std", "n", "n_failed"]
        rows = {(r["dataset"], r["backbone"], r["attention"], r["metric"]): r for r in reader}
    # 2 backbones x 2 attentions x 2 metrics + 2 map rows (global only) + 2 x 2 delta rows.
    assert len(rows) == 8 + 2 + 4
    cell = rows[("synthetic", "vgg", "global", "test/acc")]
    assert math.isclose(float(cell["mean"]), 0.76) and math.isclose(float(cell["std"]), math.sqrt(0.0002))
    assert (cell["n"], cell["n_failed"], cell["n_unfinished"], cell["n_jobs"]) == ("2", "1", "0", "3")
    delta = rows[("synthetic", "resnet", "delta(global-none)", "test/auroc")]
    assert math.isclose(float(delta["mean"]), 0.06) and delta["std"] == "" and delta["n"] == ""
    assert ("synthetic", "resnet", "none", "test/map_auroc") not in rows


def test_write_summary_writes_three_files_into_the_sweep(sweep: Path):
    paths = write_summary(sweep)
    assert {path.name for path in paths.values()} == {"results.md", "results.csv", "results.png", "results.tex"}
    assert all(path.parent == sweep for path in paths.values())
    assert paths["plot"].read_bytes()[:8] == PNG_MAGIC
    assert "| vgg | 0.740 ± 0.040 (n=3) |" in paths["markdown"].read_text()
    assert load_sweep(sweep).jobs[0].name.startswith("0_")  # the report files are not taken for jobs


def test_script_writes_the_same_report(sweep: Path, tmp_path: Path):
    out = tmp_path / "out"
    result = run_script("scripts/summarize.py", str(sweep), "--out", str(out), "--metrics", "test/acc", timeout=120)
    assert result.returncode == 0, result.stderr
    markdown = (out / "results.md").read_text()
    assert "| vgg | 0.740 ± 0.040 (n=3) | 0.760 ± 0.014 (n=2, 1 failed) | +0.020 |" in markdown
    assert "## test/auroc" not in markdown and "## test/map_auroc" in markdown  # only what was asked (+ the map)
    assert (out / "results.png").read_bytes()[:8] == PNG_MAGIC
    assert (out / "results.csv").read_text().startswith("dataset,backbone,attention,metric,mean,std,n,n_failed")
    assert "| vgg | 0.740" in result.stdout and not (sweep / "results.md").exists()


def test_partial_sweep_counts_unfinished_and_not_started_jobs(tmp_path: Path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    _target_: hydra._internal.core_plugins.basic_sweeper.BasicSweeper\n"
        "    params: null\n  overrides:\n    task:\n    - backbone=resnet\n    - attention=none,global\n"
        "    - seed=0,1\n"
    )
    make_job(sweep, 0, "resnet", "none", 0, {"test/acc": 0.912, "test/auroc": 0.95})
    make_job(sweep, 1, "resnet", "none", 1)  # still running
    make_job(sweep, 2, "resnet", "global", 0)  # still running; seed 1 has not started
    summary = summarize(load_sweep(sweep))
    markdown = render_markdown(summary)
    assert table(markdown, "test/acc")[2] == "| resnet | 0.912 (n=1, 1 unfinished) | — (n=0, 1 unfinished) | — |"
    counts = "Job directories: 3 (1 finished, 0 failed, 2 unfinished); multirun.yaml describes 4 jobs (1 not started)."
    assert counts in markdown
    section = table(markdown, "Failed or unfinished jobs")
    assert [line.split(" | ")[2] for line in section[2:]] == ["unfinished", "unfinished", "not started"]
    assert "`attention=global,seed=1`" in section[-1]
    assert "test/map_auroc" not in markdown  # no job logged a map yet


def test_nonfinite_metric_fails_only_that_metric(tmp_path: Path):
    sweep = tmp_path / "sweep"
    make_job(sweep, 0, "densenet", "global", 0, {"test/acc": 0.5, "test/auroc": float("nan")})
    make_job(sweep, 1, "densenet", "global", 1, {"test/acc": 0.7, "test/auroc": 0.8})
    markdown = render_markdown(summarize(load_sweep(sweep)))
    assert table(markdown, "test/acc")[2] == "| densenet | 0.600 ± 0.141 (n=2) |"
    assert table(markdown, "test/auroc")[2] == "| densenet | 0.800 (n=1, 1 failed) |"
    assert table(markdown, "Failed or unfinished jobs")[2:] == [
        "| `0_attention=global,backbone=densenet,seed=0` | synthetic / densenet / global "
        "| finished, unusable metric | test/auroc is nan |"
    ]


def test_status_files_mark_failures(tmp_path: Path):
    sweep = tmp_path / "sweep"
    make_job(sweep, 0, "vgg", "none", 0, files={"status.json": json.dumps({"status": "failed", "error": "OOM\nmore"})})
    make_job(sweep, 1, "vgg", "none", 1, files={"status.json": json.dumps({"status": "running"})})
    make_job(sweep, 2, "vgg", "none", 2)
    make_job(sweep, 3, "vgg", "none", 3, {"test/acc": 0.9, "test/auroc": 0.9})
    (sweep / "sweep_status.jsonl").write_text(
        json.dumps({"job": "2_attention=none,backbone=vgg,seed=2", "overrides": [], "status": "failed"})
        + "\nnot json\n"
    )
    summary = summarize(load_sweep(sweep))
    reasons = {job.name[0]: (state, reason) for job, state, reason in summary.problems}
    assert reasons == {
        "0": ("failed", "status 'failed': OOM"),
        "1": ("unfinished", "no metrics.json (still running, or stopped without a trace)"),
        "2": ("failed", "'failed' in sweep_status.jsonl"),
    }
    assert table(render_markdown(summary), "test/acc")[2] == "| vgg | 0.900 (n=1, 2 failed, 1 unfinished) |"
    assert any("line 2 is not a job record" in note for note in summary.notes)


def test_rows_and_columns_follow_the_paper_order_then_alphabetical(tmp_path: Path):
    sweep = tmp_path / "sweep"
    combos = [("zeta", "static"), ("densenet", "custom"), ("alpha", "local"), ("googlenet", "none"), ("vgg", "global")]
    for number, (backbone, attention) in enumerate(combos):
        make_job(sweep, number, backbone, attention, 0, {"test/acc": 0.5, "test/auroc": 0.5})
    summary = summarize(load_sweep(sweep))
    assert [summary.row_labels[row] for row in summary.rows] == ["googlenet", "vgg", "densenet", "alpha", "zeta"]
    header = table(render_markdown(summary), "test/acc")[0]
    assert header == (
        "| backbone | synthetic: none | synthetic: global | synthetic: local | synthetic: static "
        "| synthetic: custom | synthetic: Δ(global − none) |"
    )


def test_variants_settings_and_datasets_are_never_pooled(tmp_path: Path):
    sweep = tmp_path / "sweep"
    jobs = [
        ("resnet18", "trainer.max_epochs=2", "synthetic", 0.6),
        ("resnet50", "trainer.max_epochs=2", "synthetic", 0.7),
        ("resnet18", "trainer.max_epochs=10", "synthetic", 0.8),
        ("resnet18", "trainer.max_epochs=2", "pneumoniamnist", 0.9),
    ]
    for number, (variant, extra, dataset, acc) in enumerate(jobs):
        make_job(
            sweep,
            number,
            "resnet",
            "none",
            0,
            {"test/acc": acc, "test/auroc": acc},
            dataset=dataset,
            variant=variant,
            extra=(f"backbone.variant={variant}", extra),
        )
    markdown = render_markdown(summarize(load_sweep(sweep)))
    assert table(markdown, "test/acc") == [
        "| backbone | pneumoniamnist: none | synthetic: none |",
        "|---|---|---|",
        "| resnet (resnet18) [trainer.max_epochs=2] | 0.900 (n=1) | 0.600 (n=1) |",
        "| resnet (resnet18) [trainer.max_epochs=10] |  | 0.800 (n=1) |",
        "| resnet (resnet50) [trainer.max_epochs=2] |  | 0.700 (n=1) |",
    ]
    assert "the sweep also varies trainer.max_epochs" in markdown
    rows = csv_rows(summarize(load_sweep(sweep)))
    assert {(r["variant"], r["setting"]) for r in rows} == {
        ("resnet18", "trainer.max_epochs=2"),
        ("resnet50", "trainer.max_epochs=2"),
        ("resnet18", "trainer.max_epochs=10"),
    }


def test_unreadable_config_is_listed_not_dropped(tmp_path: Path):
    sweep = tmp_path / "sweep"
    make_job(sweep, 0, "vgg", "none", 0, {"test/acc": 0.5, "test/auroc": 0.5})
    broken = make_job(sweep, 1, "vgg", "none", 1, {"test/acc": 0.6, "test/auroc": 0.6})
    (broken / ".hydra" / "config.yaml").write_text("dataset: [unclosed\n")
    summary = summarize(load_sweep(sweep))
    assert [(job.name[0], state) for job, state, _ in summary.problems] == [("1", "failed")]
    assert "config.yaml unreadable" in summary.problems[0][2]
    assert table(render_markdown(summary), "test/acc")[2] == "| vgg | 0.500 (n=1) |"


def test_missing_or_empty_sweep_is_an_error(tmp_path: Path):
    with pytest.raises(SweepError, match="does not exist"):
        load_sweep(tmp_path / "nowhere")
    (tmp_path / "empty" / "not_a_job").mkdir(parents=True)
    with pytest.raises(SweepError, match="no job directories"):
        load_sweep(tmp_path / "empty")
    (tmp_path / "single" / ".hydra").mkdir(parents=True)
    with pytest.raises(SweepError, match="single run's directory"):
        load_sweep(tmp_path / "single")
    for target, message in ((tmp_path / "nowhere", "does not exist"), (tmp_path / "empty", "no job directories")):
        result = run_script("scripts/summarize.py", str(target), timeout=120)
        assert result.returncode != 0
        assert "summarize.py: error: " in result.stderr and message in result.stderr
    assert not (tmp_path / "empty" / "results.md").exists()


def test_requested_metrics_map_only_in_its_columns_and_unknown_metric_noted(sweep: Path):
    summary = summarize(load_sweep(sweep), metrics=("test/map_auroc", "test/accuracy"))
    assert [table.metric for table in summary.tables] == ["test/map_auroc", "test/accuracy"]
    assert summary.tables[0].columns == [("synthetic", "global")]  # no failures invented for attention=none
    assert any("no finished job logged 'test/accuracy'" in note for note in summary.notes)
    accuracy = table(render_markdown(summary), "test/accuracy")
    assert accuracy[2] == "| vgg | — (n=0, 3 failed) | — (n=0, 3 failed) | — |"
    assert len(summary.problems) == 12  # every job is listed: 11 without the key, 1 failed
    with pytest.raises(ValueError, match="no metrics"):
        summarize(load_sweep(sweep), metrics=())


def test_the_expected_grid_is_the_basic_sweepers_own():
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # the reference, in the test only
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from gsa_exp.reporting.grid import grid_combinations

    arguments = [
        "backbone=resnet,vgg",
        "seed=range(0,3)",
        "attention=none,global",
        "trainer.max_epochs=2",
        "seed=choice(0,1)",
    ]
    parsed = OverridesParser.create().parse_overrides(arguments)
    expected = [tuple(batch) for batch in BasicSweeper.split_arguments(parsed, None)[0]]
    assert grid_combinations(parsed) == expected and len(expected) == 2 * 2 * 2


def test_schemes_and_resolutions_group_the_rows_and_global_meets_none_within_each_group(tmp_path: Path):
    sweep, number = tmp_path / "sweep", 0
    for scheme in ("knn", "end_to_end"):  # written out of order: end_to_end comes first, as in conf/scheme/
        for size in (64, 28):
            for attention in ("none", "global"):
                for seed in (0, 1):
                    acc = 0.5 + 0.2 * (scheme == "end_to_end") + 0.1 * (size == 64) + 0.05 * (attention == "global")
                    overrides = (f"scheme={scheme}", f"dataset.image_size={size}")
                    metrics = {"test/acc": acc + 0.01 * seed, "test/auroc": acc}
                    make_job(sweep, number, "resnet", attention, seed, metrics, scheme=scheme, image_size=size,
                             extra=overrides)  # fmt: skip
                    number += 1
    summary = summarize(load_sweep(sweep))
    markdown = render_markdown(summary)
    assert table(markdown, "test/acc")[2:] == [
        "| resnet [end_to_end, 28 px] | 0.705 ± 0.007 (n=2) | 0.755 ± 0.007 (n=2) | +0.050 |",
        "| resnet [end_to_end, 64 px] | 0.805 ± 0.007 (n=2) | 0.855 ± 0.007 (n=2) | +0.050 |",
        "| resnet [knn, 28 px] | 0.505 ± 0.007 (n=2) | 0.555 ± 0.007 (n=2) | +0.050 |",
        "| resnet [knn, 64 px] | 0.605 ± 0.007 (n=2) | 0.655 ± 0.007 (n=2) | +0.050 |",
    ]
    assert "the sweep also varies" not in markdown  # scheme and resolution are the rows, not a setting
    # every comparison pairs the two seeds of one (scheme, resolution) group: Δ is +0.05 in each, never mixed
    pairs = {(c.question.row[:2], c.question.metric) for c in summary.comparisons}
    assert pairs == {(group, metric) for group in [("end_to_end", "28 px"), ("end_to_end", "64 px"),
                                                   ("knn", "28 px"), ("knn", "64 px")]
                     for metric in ("test/acc", "test/auroc")}  # fmt: skip
    for comparison in summary.comparisons:
        assert [run.seed for run in comparison.question.none] == [0, 1]
        values = [run.value for run in comparison.question.global_], [run.value for run in comparison.question.none]
        assert all(math.isclose(g - n, 0.05) for g, n in zip(*values))
    rows = [r for r in csv_rows(summary) if r["attention"] == "none" and r["metric"] == "test/auroc"]
    assert [(r["scheme"], r["resolution"], round(float(r["mean"]), 6)) for r in rows] == [
        ("end_to_end", "28 px", 0.7),
        ("end_to_end", "64 px", 0.8),
        ("knn", "28 px", 0.5),
        ("knn", "64 px", 0.6),
    ]


def test_data_sets_of_their_own_sizes_and_one_scheme_keep_the_plain_rows(tmp_path: Path):
    sweep = tmp_path / "sweep"
    for number, (dataset, size) in enumerate([("pneumoniamnist", 28), ("fer2013", 48)]):
        make_job(sweep, number, "resnet", "none", 0, {"test/acc": 0.5, "test/auroc": 0.5}, dataset=dataset,
                 image_size=size, scheme="linear_probe")  # fmt: skip
    summary = summarize(load_sweep(sweep))
    assert [summary.row_labels[row] for row in summary.rows] == ["resnet"]
