"""Sweep summaries (scripts/summarize.py): tables, CSV, plot and the failed-job report on fabricated sweeps."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

import numpy as np
import pytest
from conftest import run_script
from sklearn.metrics import roc_auc_score

from gsa_exp.reporting.jobs import SweepError, load_sweep
from gsa_exp.reporting.render import csv_rows, render_markdown
from gsa_exp.reporting.summary import write_summary
from gsa_exp.reporting.tables import summarize

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TRACEBACK = 'Traceback (most recent call last):\n  File "train.py", line 1\nRuntimeError: CUDA out of memory\n'

# (backbone, attention) -> test/acc per seed 0, 1, 2; None = the job failed (no metrics.json).
ACC = {
    ("vgg", "none"): [0.70, 0.74, 0.78],
    ("vgg", "global"): [0.75, 0.77, None],
    ("resnet", "none"): [0.80, 0.82, 0.84],
    ("resnet", "global"): [0.85, 0.88, 0.91],
}
AUROC_SHIFT = 0.1  # test/auroc = test/acc + 0.1
MAP = {"vgg": [0.5, 0.9], "resnet": [0.6, 0.7, 0.8]}  # test/map_auroc of the global jobs


def make_job(
    sweep: Path,
    number: int,
    backbone: str,
    attention: str,
    seed: int,
    metrics: dict | None = None,
    dataset: str = "synthetic",
    variant: str | None = None,
    extra: tuple[str, ...] = (),
    files: dict[str, str] | None = None,
) -> Path:
    """A job directory as Hydra and train.py leave it."""
    overrides = [f"backbone={backbone}", f"attention={attention}", f"seed={seed}", *extra]
    job = sweep / f"{number}_{','.join(sorted(overrides))}"
    (job / ".hydra").mkdir(parents=True)
    variant_line = f"  variant: {variant}\n" if variant else ""
    (job / ".hydra" / "config.yaml").write_text(
        f"task_name: train\nseed: {seed}\ndataset:\n  name: {dataset}\n  image_size: 32\n"
        f"backbone:\n  name: {backbone}\n{variant_line}attention:\n  name: {attention}\n"
        "  bank:\n    seed: ${seed}\n"
    )
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {item}\n" for item in overrides))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))
    for name, text in (files or {}).items():
        (job / name).write_text(text)
    return job


def grid_metrics(backbone: str, attention: str, seed: int) -> dict | None:
    acc = ACC[(backbone, attention)][seed]
    if acc is None:
        return None
    metrics = {"test/acc": acc, "test/auroc": acc + AUROC_SHIFT, "val/acc": 0.5, "test/loss": 0.3}
    if attention == "global":
        metrics["test/map_auroc"] = MAP[backbone][seed]
    return metrics


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """2 backbones x 2 attentions x 3 seeds; job vgg/global/seed 2 failed with a traceback."""
    root = tmp_path / "multirun" / "2026-11-25" / "22-14-05"
    number = 0
    for backbone in ("resnet", "vgg"):  # written in the "wrong" order: rows must follow the paper's
        for attention in ("global", "none"):
            for seed in range(3):
                failed = ACC[(backbone, attention)][seed] is None
                files = {"error.txt": TRACEBACK}
                make_job(
                    root,
                    number,
                    backbone,
                    attention,
                    seed,
                    grid_metrics(backbone, attention, seed),
                    files=files if failed else None,
                )
                number += 1
    return root


def table(markdown: str, title: str) -> list[str]:
    """The lines of the markdown table under '## title'."""
    lines = markdown.splitlines()
    start = lines.index(f"## {title}") + 2
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


def expected_cell(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f} (n={len(values)})"


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


# ----------------------------------------------------------------------------- global vs none statistics


def stats_rows(markdown: str) -> dict[tuple[str, str, str], str]:
    """The statistics table's lines keyed by (backbone, data set, metric)."""
    lines = markdown.splitlines()
    start = lines.index("## Statistics: global vs none")
    start += next(i for i, line in enumerate(lines[start:]) if line.startswith("| backbone | data set |"))
    assert lines[start].startswith("| backbone | data set | metric | seed pairs | Δ over seeds | 95 % CI (t) |")
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    return {tuple(part.strip() for part in line.strip("|").split("|")[:3]): line for line in lines[start + 2 : end]}


def test_statistics_paired_over_seeds_by_hand(sweep: Path):
    summary = summarize(load_sweep(sweep))
    markdown = render_markdown(summary)
    rows = stats_rows(markdown)
    assert set(rows) == {(b, "synthetic", m) for b in ("vgg", "resnet") for m in ("test/acc", "test/auroc")}
    # resnet: differences 0.05, 0.06, 0.07 -> mean 0.06, sd 0.01; CI 0.06 ± 4.3027 * 0.01 / sqrt(3) = ± 0.0248;
    # t = 10.39 with 2 df -> p = 0.0091. No per-image files: the over-images columns are empty.
    assert rows[("resnet", "synthetic", "test/acc")] == (
        "| resnet | synthetic | test/acc | 3 | +0.060 | [+0.035, +0.085] | 0.009 | — | — | — | — | — |"
    )
    # vgg: seed 2 failed on global, so 2 pairs: 0.05, 0.03 -> mean 0.04, se 0.01, t = 4 with 1 df;
    # CI 0.04 ± 12.706 * 0.01; p = 0.156.
    assert rows[("vgg", "synthetic", "test/auroc")].startswith(
        "| vgg | synthetic | test/auroc | 2 | +0.040 | [-0.087, +0.167] | 0.156 | — |"
    )
    assert (
        "- resnet on synthetic: test/acc +0.060 [+0.035, +0.085], p = 0.009 (paired over 3 seeds): "
        "significant at 0.05. Not tested over test images (see the notes)."
    ) in markdown
    assert (
        "- vgg on synthetic: test/acc +0.040 [-0.087, +0.167], p = 0.156 (paired over 2 seeds): "
        "not significant at 0.05."
    ) in markdown
    assert (
        "- vgg on synthetic, test/acc: seed 2 not paired: global failed (8_attention=global,backbone=vgg,seed=2)"
        in markdown
    )
    assert "- resnet on synthetic, test/auroc: no per-image files (predictions_test.csv, targets_test.csv)" in markdown
    assert markdown.index("## test/map_auroc") < markdown.index("## Statistics") < markdown.index("## Failed")
    delta = {
        (r["backbone"], r["metric"], r["seed"]): r for r in csv_rows(summary) if r["attention"] == "delta(global-none)"
    }
    resnet = delta[("resnet", "test/acc", "")]
    assert resnet["n_pairs"] == "3" and math.isclose(float(resnet["paired_p"]), 0.0091326, rel_tol=1e-4)
    assert math.isclose(float(resnet["paired_ci_low"]), 0.06 - 4.302652729749462 * 0.01 / math.sqrt(3))
    vgg = delta[("vgg", "test/acc", "")]  # Δ of the means (0.760 - 0.740) is not the mean paired Δ (seeds 0, 1)
    assert math.isclose(float(vgg["mean"]), 0.02) and math.isclose(float(vgg["paired_delta"]), 0.04)
    assert len(delta) == 4  # no per-seed rows without per-image files


def test_statistics_state_missing_pairs(tmp_path: Path):
    sweep = tmp_path / "sweep"
    make_job(sweep, 0, "resnet", "none", 0, {"test/acc": 0.912, "test/auroc": 0.95})
    make_job(sweep, 1, "resnet", "none", 1)  # still running
    make_job(sweep, 2, "resnet", "global", 0)  # still running
    markdown = render_markdown(summarize(load_sweep(sweep)))
    assert stats_rows(markdown)[("resnet", "synthetic", "test/acc")] == (
        "| resnet | synthetic | test/acc | 0 | — | — | — | — | — | — | — | — |"
    )
    assert "- resnet on synthetic: test/acc: no seed pair, so no difference over seeds." in markdown
    assert (
        "- resnet on synthetic, test/acc: seed 0 not paired: "
        "global unfinished (2_attention=global,backbone=resnet,seed=0)"
    ) in markdown
    assert "seed 1 not paired: none unfinished (1_attention=none,backbone=resnet,seed=1); no global job" in markdown
    only_map = render_markdown(summarize(load_sweep(sweep), metrics=("test/map_auroc",)))
    assert "None: the requested metrics include neither test/acc nor test/auroc." in only_map


def image_files(scores: np.ndarray, labels: np.ndarray) -> dict[str, str]:
    """predictions_test.csv and targets_test.csv as train.py writes them."""
    labels = labels.reshape(len(labels), -1)
    return {
        "predictions_test.csv": "".join(
            f"{i}," + ",".join(f"{v:.8g}" for v in row) + "\n" for i, row in enumerate(scores)
        ),
        "targets_test.csv": "".join(f"{i}," + ",".join(str(v) for v in row) + "\n" for i, row in enumerate(labels)),
    }


def image_job(
    sweep: Path,
    number: int,
    backbone: str,
    attention: str,
    seed: int,
    scores: np.ndarray,
    labels: np.ndarray,
    dataset: str,
    files: bool = True,
) -> Path:
    """A finished job whose metrics.json holds the accuracy and AUROC of its per-image scores."""
    flat = labels.reshape(len(labels), -1)[:, 0]
    acc = float((scores.argmax(axis=1) == flat).mean())
    auroc = (
        roc_auc_score(flat, scores[:, 1])
        if scores.shape[1] == 2
        else float(np.mean([roc_auc_score(flat == c, scores[:, c]) for c in range(scores.shape[1])]))
    )
    metrics = {"test/acc": acc, "test/auroc": float(auroc)}
    return make_job(
        sweep,
        number,
        backbone,
        attention,
        seed,
        metrics,
        dataset=dataset,
        extra=(f"dataset={dataset}",),
        files=image_files(scores, labels) if files else None,
    )


def softmax_scores(labels: np.ndarray, strength: float, rng: np.random.Generator, classes: int = 2) -> np.ndarray:
    logits = rng.normal(0, 1, (len(labels), classes))
    logits[np.arange(len(labels)), labels] += strength
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


@pytest.fixture
def image_sweep(tmp_path: Path) -> Path:
    """pneumoniamnist (binary, 100 test images): resnet global clearly better than none; vgg global = none
    (identical files); densenet seed 1 on other targets, seed 2 global without files. octmnist (4 classes): resnet."""
    rng = np.random.default_rng(0)
    root = tmp_path / "multirun" / "2026-12-01" / "10-00-00"
    labels = rng.integers(0, 2, 100)
    number = 0
    for seed in range(3):
        for attention, strength in (("none", 0.3), ("global", 3.0)):
            image_job(
                root, number, "resnet", attention, seed, softmax_scores(labels, strength, rng), labels, "pneumoniamnist"
            )
            number += 1
        same = softmax_scores(labels, 1.0, rng)
        for attention in ("none", "global"):
            image_job(root, number, "vgg", attention, seed, same, labels, "pneumoniamnist")
            number += 1
        for attention in ("none", "global"):
            other = labels.copy()
            if seed == 1 and attention == "global":
                other[:5] = 1 - other[:5]
            image_job(
                root,
                number,
                "densenet",
                attention,
                seed,
                softmax_scores(other, 1.0, rng),
                other,
                "pneumoniamnist",
                files=not (seed == 2 and attention == "global"),
            )
            number += 1
    classes = rng.integers(0, 4, 60)
    for seed in range(2):
        for attention, strength in (("none", 0.5), ("global", 2.5)):
            image_job(
                root, number, "resnet", attention, seed, softmax_scores(classes, strength, rng, 4), classes, "octmnist"
            )
            number += 1
    return root


def test_statistics_over_test_images(image_sweep: Path):
    summary = summarize(load_sweep(image_sweep))
    markdown = render_markdown(summary)
    rows = stats_rows(markdown)
    cells = {key: [part.strip() for part in line.strip("|").split("|")] for key, line in rows.items()}
    resnet = cells[("resnet", "pneumoniamnist", "test/auroc")]
    # The over-images Δ is the mean over seeds of AUROC(global) − AUROC(none), here from sklearn on the files.
    jobs = {(job.backbone, job.attention, job.seed, job.dataset): job for job in load_sweep(image_sweep).jobs}
    deltas = []
    for seed in range(3):
        aucs = []
        for attention in ("none", "global"):
            path = jobs[("resnet", attention, seed, "pneumoniamnist")].path
            scores = np.loadtxt(path / "predictions_test.csv", delimiter=",")[:, 2]
            truth = np.loadtxt(path / "targets_test.csv", delimiter=",")[:, 1]
            aucs.append(roc_auc_score(truth, scores))
        deltas.append(aucs[1] - aucs[0])
    assert resnet[7] == f"{np.mean(deltas):+.3f}" and np.mean(deltas) > 0.3
    assert float(resnet[8].strip("[]").split(", ")[0]) > 0  # the bootstrap interval excludes 0
    assert resnet[9] == "< 0.001" and resnet[10] == "< 0.001"  # bootstrap: its floor 2/2001; DeLong
    assert resnet[11].count("DeLong p") == 3 and resnet[11].startswith("seed 0: +")
    assert "- resnet on pneumoniamnist: test/auroc +" in markdown
    assert (
        f"Over 100 test images (mean of 3 seed pairs, bootstrap, 2000 resamples): {np.mean(deltas):+.3f}"
    ) in markdown
    assert "p < 0.001: significant at 0.05; DeLong p < 0.001: significant at 0.05." in markdown
    # Identical predictions: Δ 0 everywhere, p = 1 over seeds, over images and by DeLong.
    assert cells[("vgg", "pneumoniamnist", "test/auroc")][4:11] == [
        "+0.000",
        "[+0.000, +0.000]",
        "1.000",
        "+0.000",
        "[+0.000, +0.000]",
        "1.000",
        "1.000",
    ]
    assert "all 3 paired differences are 0: p = 1" in markdown
    # densenet: only seed 0 is usable over images; the others are stated.
    densenet = cells[("densenet", "pneumoniamnist", "test/acc")]
    assert densenet[3] == "3" and densenet[11].startswith("seed 0: ") and "seed 1" not in densenet[11]
    assert (
        "densenet on pneumoniamnist, test/acc: seed 1 not re-scored over test images: the targets files of"
    ) in markdown
    assert "seed 2 not re-scored over test images: " in markdown
    assert "predictions_test.csv and targets_test.csv missing" in markdown
    # Multi-class: bootstrap yes, DeLong no (and said why).
    oct_auroc = cells[("resnet", "octmnist", "test/auroc")]
    assert oct_auroc[9] != "—" and oct_auroc[10] == "—"
    assert "DeLong not done: it compares two ROC curves of a binary task, this one is multi-class" in markdown
    # results.csv: the cell's delta row and one row per re-scored seed pair.
    delta = [
        r
        for r in csv_rows(summary)
        if r["attention"] == "delta(global-none)"
        and (r["dataset"], r["backbone"], r["metric"]) == ("pneumoniamnist", "resnet", "test/auroc")
    ]
    assert [r["seed"] for r in delta] == ["", "0", "1", "2"]
    assert math.isclose(float(delta[0]["image_delta"]), np.mean(deltas))
    assert float(delta[0]["delong_p"]) < 0.001 and delta[0]["image_seeds"] == "0;1;2" and delta[0]["n_images"] == "100"
    assert math.isclose(float(delta[1]["image_delta"]), deltas[0]) and delta[1]["paired_p"] == ""


def test_bootstrap_options_reach_the_report(image_sweep: Path, tmp_path: Path):
    out = tmp_path / "out"
    result = run_script(
        "scripts/summarize.py",
        str(image_sweep),
        "--out",
        str(out),
        "--resamples",
        "99",
        "--bootstrap-seed",
        "7",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    markdown = (out / "results.md").read_text()
    assert "(99 paired bootstrap resamples, seed 7)" in markdown
    assert "| resnet | pneumoniamnist | test/auroc | 3 |" in markdown and "| 0.020 | < 0.001 |" in markdown  # 2/100
    bad = run_script("scripts/summarize.py", str(image_sweep), "--resamples", "0", timeout=120)
    assert bad.returncode == 2 and "--resamples must be >= 1" in bad.stderr


# ----------------------------------------------------------------------------- results.tex and references


def test_results_tex_is_a_booktabs_table_with_the_best_cells_bold(sweep: Path):
    from gsa_exp.reporting.latex import escape

    tex = write_summary(sweep)["latex"].read_text()
    lines = tex.splitlines()
    assert lines[1] == (
        "% Needs \\usepackage{booktabs} in the preamble (\\toprule, \\midrule, \\bottomrule, \\cmidrule)."
    )
    assert all(line.startswith("%") for line in lines[:3]) and "\\begin{tabular}{lcc}" in tex
    assert tex.index("\\toprule") < tex.index("\\midrule") < tex.index("\\bottomrule")
    assert "Backbone & none & global \\\\" in lines
    # test/acc: resnet global 0.880 is the best of the data set; test/auroc: resnet global 0.980.
    assert "resnet & 0.820 $\\pm$ 0.020 & \\textbf{0.880 $\\pm$ 0.030} \\\\" in lines
    assert "vgg & 0.740 $\\pm$ 0.040 & 0.760 $\\pm$ 0.014 \\\\" in lines
    assert "resnet & 0.920 $\\pm$ 0.020 & \\textbf{0.980 $\\pm$ 0.030} \\\\" in lines
    assert tex.count("\\textbf{") == 2 and "map" not in tex.lower().replace("\\multicolumn", "")
    assert escape("my_set & 50% {a}~#$^\\") == (
        "my\\_set \\& 50\\% \\{a\\}\\textasciitilde{}\\#\\$\\textasciicircum{}\\textbackslash{}"
    )


def test_results_tex_escapes_names(tmp_path: Path):
    sweep = tmp_path / "sweep"
    make_job(sweep, 0, "res_net", "none", 0, {"test/acc": 0.5, "test/auroc": 0.6}, dataset="my_set")
    make_job(sweep, 1, "res_net", "global", 0, {"test/acc": 0.5, "test/auroc": 0.7}, dataset="my_set")
    tex = write_summary(sweep)["latex"].read_text()
    assert "\\multicolumn{2}{c}{my\\_set}" in tex
    assert "res\\_net & \\textbf{0.500} & \\textbf{0.500} \\\\" in tex  # a tie: both bold
    assert "res\\_net & 0.600 & \\textbf{0.700} \\\\" in tex


def test_references_are_shown_only_when_asked(image_sweep: Path, tmp_path: Path):
    plain = write_summary(image_sweep, out_dir=tmp_path / "plain")
    assert "MedMNIST v2" not in plain["markdown"].read_text() and "MedMNIST" not in plain["latex"].read_text()
    out = tmp_path / "refs"
    result = run_script(
        "scripts/summarize.py", str(image_sweep), "--out", str(out), "--references", "--resamples", "20", timeout=120
    )
    assert result.returncode == 0, result.stderr
    markdown = (out / "results.md").read_text()
    acc = table(markdown, "test/acc")
    assert acc[0].endswith(
        "| octmnist: Δ(global − none) | octmnist: MedMNIST v2, ResNet-18 (28) | pneumoniamnist: none "
        "| pneumoniamnist: global | pneumoniamnist: Δ(global − none) | pneumoniamnist: MedMNIST v2, ResNet-18 (28) |"
    )
    assert all(line.endswith("| 0.854 |") and "| 0.743 |" in line for line in acc[2:] if "resnet" in line)
    assert table(markdown, "test/auroc")[2].endswith("| 0.944 |")
    assert "Scientific Data 10, 41 (2023)" in markdown and "ResNet-18 at 28 px" in markdown
    tex = (out / "results.tex").read_text()
    assert (
        "\\textit{MedMNIST v2, ResNet-18 (28)}$^\\dagger$ & \\multicolumn{2}{c}{0.743} & \\multicolumn{2}{c}{0.854}"
    ) in tex
    assert "\\multicolumn{2}{c}{0.944}" in tex and "Yang et al. 2023, Scientific Data" in tex


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
