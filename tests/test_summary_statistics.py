"""Sweep summaries: global vs none statistics (over seeds, over test images), results.tex and references."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from conftest import run_script
from fabricated_sweeps import make_job, table
from sklearn.metrics import roc_auc_score

from gsa_exp.reporting.jobs import load_sweep
from gsa_exp.reporting.render import csv_rows, render_markdown
from gsa_exp.reporting.summary import write_summary
from gsa_exp.reporting.tables import summarize

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
