"""Paired tests of global vs none (gsa_exp.reporting.statistics) on hand-computed and brute-force cases."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from gsa_exp.reporting import statistics as st
from gsa_exp.reporting.predictions import NoPerImageFiles, PerImageError, read_per_image

T_975_DF2 = 4.302652729749462  # t(0.975, 2 degrees of freedom), from a t table to 3 decimals: 4.303


# ----------------------------------------------------------------------------- over seeds


def test_paired_t_matches_the_hand_computed_interval_and_p():
    result = st.paired_t([0.01, 0.02, 0.03])
    # mean 0.02, sample sd 0.01, se 0.01 / sqrt(3): CI 0.02 ± 4.3027 * 0.005774 = 0.02 ± 0.024841.
    half = T_975_DF2 * 0.01 / math.sqrt(3)
    assert result.n == 3 and result.mean == pytest.approx(0.02)
    assert (result.ci_low, result.ci_high) == (pytest.approx(0.02 - half), pytest.approx(0.02 + half))
    assert result.ci_low == pytest.approx(-0.004841, abs=1e-6)
    # t = 0.02 / 0.005774 = 3.4641 with 2 df: two-sided p = 0.0742; scipy's paired test agrees.
    none = np.array([0.80, 0.70, 0.60])
    assert result.p == pytest.approx(0.07418, abs=1e-5)
    assert result.p == pytest.approx(stats.ttest_rel(none + [0.01, 0.02, 0.03], none).pvalue)
    assert result.note == ""


def test_paired_t_needs_two_pairs():
    one = st.paired_t([0.05])
    assert (one.n, one.mean, one.ci_low, one.ci_high, one.p) == (1, 0.05, None, None, None)
    assert "needs at least 2" in one.note
    none = st.paired_t([])
    assert (none.n, none.mean, none.p) == (0, None, None) and none.note == "no seed pairs"


def test_paired_t_with_identical_differences():
    zero = st.paired_t([0.0, 0.0, 0.0])
    assert (zero.mean, zero.ci_low, zero.ci_high, zero.p) == (0.0, 0.0, 0.0, 1.0)
    # 0.76 - 0.74 and 0.78 - 0.76 differ in the last bits: still "identical", not a tiny variance.
    constant = st.paired_t([0.76 - 0.74, 0.78 - 0.76, 0.02])
    assert constant.p == 0.0 and constant.ci_low == constant.ci_high == pytest.approx(0.02)
    assert "zero variance" in constant.note
    assert st.paired_t([0.02, 0.021]).p > 0  # a real spread is tested as usual


# ----------------------------------------------------------------------------- metrics


def test_task_is_read_from_the_columns():
    assert st.infer_task(np.zeros((4, 2)), np.array([[0], [1], [1], [0]])) == st.BINARY
    assert st.infer_task(np.zeros((4, 1)), np.array([[0], [1], [1], [0]])) == st.BINARY
    assert st.infer_task(np.zeros((4, 3)), np.array([[0], [2], [1], [0]])) == st.MULTICLASS
    assert st.infer_task(np.zeros((4, 3)), np.zeros((4, 3), dtype=int)) == st.MULTILABEL
    with pytest.raises(ValueError, match="3 target labels but 2 score columns"):
        st.infer_task(np.zeros((4, 2)), np.zeros((4, 3), dtype=int))
    with pytest.raises(ValueError, match="targets outside 0..2"):
        st.infer_task(np.zeros((2, 3)), np.array([[0], [3]]))


def test_accuracy_by_hand():
    scores = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.8, 0.2]])
    assert st.accuracy(scores, np.array([0, 1, 0, 1])) == 0.5  # right on images 0 and 1
    assert st.accuracy(np.array([0.9, 0.4, 0.5]), np.array([1, 0, 1])) == pytest.approx(2 / 3)  # 0.5 is not > 0.5
    multilabel = np.array([[0.9, 0.2], [0.6, 0.7]])
    assert st.accuracy(multilabel, np.array([[1, 0], [0, 1]])) == 0.75  # 3 of 4 label decisions right


def test_auroc_matches_sklearn_for_every_task():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 60)
    binary = np.round(rng.random(60), 1)  # ties on purpose
    assert st.auroc(np.c_[1 - binary, binary], labels) == pytest.approx(roc_auc_score(labels, binary))
    classes = rng.integers(0, 4, 80)
    softmax = rng.dirichlet(np.ones(4), 80)
    expected = np.mean([roc_auc_score(classes == c, softmax[:, c]) for c in range(4)])
    assert st.auroc(softmax, classes) == pytest.approx(expected)
    assert st.auroc(softmax, classes) == pytest.approx(roc_auc_score(classes, softmax, multi_class="ovr"))
    labels_ml = rng.integers(0, 2, (50, 3))
    sig = np.round(rng.random((50, 3)), 2)
    assert st.auroc(sig, labels_ml) == pytest.approx(roc_auc_score(labels_ml, sig, average="macro"))


def test_weighted_auroc_is_the_auroc_of_the_resampled_images():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 3, 40)
    scores = np.round(rng.dirichlet(np.ones(3), 40), 1)
    drawn = rng.integers(0, 40, 40)
    counts = np.bincount(drawn, minlength=40).astype(float)[None, :]
    scorer = st._auroc_scorer(scores, labels[:, None], st.MULTICLASS)
    assert scorer(counts)[0] == pytest.approx(st.auroc(scores[drawn], labels[drawn]))
    accuracy = st._accuracy_scorer(scores, labels[:, None], st.MULTICLASS)
    assert accuracy(counts)[0] == pytest.approx(st.accuracy(scores[drawn], labels[drawn]))


# ----------------------------------------------------------------------------- bootstrap


def test_bootstrap_p_counts_both_tails():
    # 1 of 4 resamples <= 0, 3 >= 0: tails (1+1)/5 and (3+1)/5, p = 2 * 0.4 = 0.8.
    assert st.bootstrap_p(np.array([-1.0, 1.0, 2.0, 3.0])) == pytest.approx(0.8)
    assert st.bootstrap_p(np.zeros(10)) == 1.0
    assert st.bootstrap_p(np.ones(999)) == pytest.approx(2 / 1000)


def binary_case(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    weak = 1 / (1 + np.exp(-(0.3 * (2 * labels - 1) + rng.normal(0, 1, n))))
    strong = 1 / (1 + np.exp(-(2.0 * (2 * labels - 1) + rng.normal(0, 1, n))))
    return labels, np.c_[1 - weak, weak], np.c_[1 - strong, strong]


@pytest.mark.parametrize("metric", [st.ACCURACY, st.AUROC])
def test_identical_predictions_give_p_one(metric):
    labels, weak, _strong = binary_case()
    result = st.paired_bootstrap(metric, labels, [weak], [weak.copy()], resamples=300)
    assert result.mean == result.pairs[0]
    assert (result.mean.delta, result.mean.ci_low, result.mean.ci_high, result.mean.p) == (0.0, 0.0, 0.0, 1.0)
    assert result.mean.valid == 300 and result.n_images == 120


def test_bootstrap_finds_a_clear_difference_and_is_seeded():
    labels, weak, strong = binary_case()
    result = st.paired_bootstrap(st.AUROC, labels, [weak], [strong], resamples=500, seed=1)
    delta = st.auroc(strong, labels) - st.auroc(weak, labels)
    assert result.mean.delta == pytest.approx(delta) and delta > 0.2
    assert 0 < result.mean.ci_low < delta < result.mean.ci_high
    assert result.mean.p == pytest.approx(2 / 501)  # no resample at or below 0: the floor
    again = st.paired_bootstrap(st.AUROC, labels, [weak], [strong], resamples=500, seed=1)
    other = st.paired_bootstrap(st.AUROC, labels, [weak], [strong], resamples=500, seed=2)
    assert again == result and other.mean.ci_low != result.mean.ci_low


def test_bootstrap_over_several_pairs_tests_their_mean():
    labels, weak, strong = binary_case()
    result = st.paired_bootstrap(st.ACCURACY, labels, [weak, strong], [strong, strong], resamples=200)
    first = st.accuracy(strong, labels) - st.accuracy(weak, labels)
    assert result.pairs[0].delta == pytest.approx(first) and result.pairs[1].delta == 0.0
    assert result.mean.delta == pytest.approx(first / 2)
    assert result.pairs[1].p == 1.0 and result.pairs[0].p < 0.05


def test_bootstrap_keeps_only_resamples_where_auroc_is_defined():
    labels = np.array([1, 0, 0, 0, 0, 0])  # one positive: many resamples lose it
    scores = np.c_[np.zeros(6), np.linspace(0, 1, 6)]
    result = st.paired_bootstrap(st.AUROC, labels, [scores], [scores[::-1].copy()], resamples=200)
    assert 0 < result.mean.valid < 200


# ----------------------------------------------------------------------------- DeLong


def brute_force_delong(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong et al. 1988 straight from the definition: psi over every positive x negative pair."""
    k = len(scores)
    pos, neg = [i for i in range(len(labels)) if labels[i] == 1], [j for j in range(len(labels)) if labels[j] == 0]
    m, n = len(pos), len(neg)
    v10 = np.zeros((k, m))
    v01 = np.zeros((k, n))
    for r in range(k):
        for a, i in enumerate(pos):
            for b, j in enumerate(neg):
                psi = 1.0 if scores[r][i] > scores[r][j] else 0.5 if scores[r][i] == scores[r][j] else 0.0
                v10[r, a] += psi / n
                v01[r, b] += psi / m
    aucs = v10.mean(axis=1)
    s10 = np.array(
        [
            [sum((v10[r, a] - aucs[r]) * (v10[s, a] - aucs[s]) for a in range(m)) / (m - 1) for s in range(k)]
            for r in range(k)
        ]
    )
    s01 = np.array(
        [
            [sum((v01[r, b] - aucs[r]) * (v01[s, b] - aucs[s]) for b in range(n)) / (n - 1) for s in range(k)]
            for r in range(k)
        ]
    )
    return aucs, s10 / m + s01 / n


def test_fast_delong_matches_the_definition_and_mann_whitney():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 30)
    scores = np.round(rng.random((3, 30)) + 0.4 * labels, 1)  # ties on purpose
    aucs, covariance = st.delong_covariance(scores, labels == 1)
    expected_aucs, expected_covariance = brute_force_delong(scores, labels)
    np.testing.assert_allclose(aucs, expected_aucs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(covariance, expected_covariance, rtol=1e-10, atol=1e-14)
    m, n = (labels == 1).sum(), (labels == 0).sum()
    u = stats.mannwhitneyu(scores[0][labels == 1], scores[0][labels == 0]).statistic
    assert aucs[0] == pytest.approx(u / (m * n))


def test_delong_small_example_by_hand():
    # Positives 0.9, 0.8, 0.4 and negatives 0.7, 0.3, 0.2 for model a: pairs won 3 + 3 + 2 = 8 of 9.
    # V10 = (1, 1, 2/3), V01 = (2/3, 1, 1); AUC = 8/9; var = var(V10)/3 + var(V01)/3 = 2 * (1/27) / 3 = 2/81.
    labels = np.array([1, 1, 1, 0, 0, 0])
    a = np.array([0.9, 0.8, 0.4, 0.7, 0.3, 0.2])
    aucs, covariance = st.delong_covariance(a[None, :], labels == 1)
    assert aucs[0] == pytest.approx(8 / 9) and covariance[0, 0] == pytest.approx(2 / 81)
    # Model b ranks every positive first: AUC 1, no variance; cov(a, b) = 0, so var(b − a) = 2/81.
    b = np.array([0.9, 0.8, 0.75, 0.7, 0.3, 0.2])
    result = st.delong_test(labels == 1, a, b)
    assert result.estimate == pytest.approx(1 / 9) and result.se == pytest.approx(math.sqrt(2 / 81))
    z = (1 / 9) / math.sqrt(2 / 81)
    assert result.z == pytest.approx(z) and result.p == pytest.approx(2 * stats.norm.sf(z))


def test_delong_identical_predictions_give_p_one():
    labels, weak, _strong = binary_case()
    result = st.delong_test(labels == 1, weak[:, 1], weak[:, 1].copy())
    assert (result.estimate, result.se, result.p) == (0.0, 0.0, 1.0)


def test_delong_mean_over_pairs_is_a_contrast():
    labels, weak, strong = binary_case()
    single = st.delong_test(labels == 1, weak[:, 1], strong[:, 1])
    assert st.delong_mean_difference(labels == 1, [weak[:, 1]], [strong[:, 1]]) == single
    rng = np.random.default_rng(6)
    noisy = np.clip(strong[:, 1] + rng.normal(0, 0.2, len(labels)), 0, 1)
    a, b = [weak[:, 1], noisy], [strong[:, 1], strong[:, 1]]
    pooled = st.delong_mean_difference(labels == 1, a, b)
    aucs, covariance = brute_force_delong(np.vstack([*a, *b]), labels)
    contrast = np.array([-0.5, -0.5, 0.5, 0.5])
    assert pooled.estimate == pytest.approx(contrast @ aucs)
    assert pooled.se == pytest.approx(math.sqrt(contrast @ covariance @ contrast))
    assert pooled.p == pytest.approx(2 * stats.norm.sf(abs(pooled.estimate) / pooled.se))


def test_delong_needs_two_of_each_class():
    with pytest.raises(ValueError, match="at least 2 positives and 2 negatives"):
        st.delong_test(np.array([True, False, False]), np.array([0.1, 0.2, 0.3]), np.array([0.3, 0.2, 0.1]))


# ----------------------------------------------------------------------------- files


def test_per_image_files_are_read_and_checked(tmp_path):
    (tmp_path / "predictions_test.csv").write_text("0,0.2,0.8\n1,0.9,0.1\n")
    (tmp_path / "targets_test.csv").write_text("0,1\n1,0\n")
    found = read_per_image(tmp_path)
    np.testing.assert_array_equal(found.scores, [[0.2, 0.8], [0.9, 0.1]])
    np.testing.assert_array_equal(found.targets, [[1], [0]])
    (tmp_path / "targets_test.csv").write_text("0,1\n")
    with pytest.raises(PerImageError, match="list different images"):
        read_per_image(tmp_path)
    (tmp_path / "targets_test.csv").unlink()
    with pytest.raises(PerImageError, match="^targets_test.csv missing$"):
        read_per_image(tmp_path)
    with pytest.raises(NoPerImageFiles, match="predictions_val.csv and targets_val.csv missing"):
        read_per_image(tmp_path, "val")


# ----------------------------------------------------------------------------- pairing (comparison)


def run_dir(tmp_path: Path, name: str, scores: np.ndarray, labels: np.ndarray) -> Path:
    path = tmp_path / name
    path.mkdir()
    (path / "predictions_test.csv").write_text("".join(f"{i},{1 - s},{s}\n" for i, s in enumerate(scores)))
    (path / "targets_test.csv").write_text("".join(f"{i},{t}\n" for i, t in enumerate(labels)))
    return path


def test_pairs_need_one_usable_run_per_side_and_one_test_set_to_pool(tmp_path):
    from gsa_exp.reporting.comparison import Question, Run, compare

    labels, weak, strong = binary_case(60)
    other = labels.copy()
    other[:4] = 1 - other[:4]
    none, global_ = [], []
    for seed, truth in ((0, labels), (1, labels), (2, other)):  # seed 2 on other images (both runs)
        none.append(Run(f"n{seed}", run_dir(tmp_path, f"n{seed}", weak[:, 1], truth), seed, 0.6))
        global_.append(Run(f"g{seed}", run_dir(tmp_path, f"g{seed}", strong[:, 1], truth), seed, 0.8 + seed / 100))
    global_.append(Run("g3a", tmp_path, 3, 0.9))
    global_.append(Run("g3b", tmp_path, 3, 0.9))  # two global runs with seed 3: ambiguous
    none.append(Run("n3", tmp_path, 3, 0.7))
    none.append(Run("nx", tmp_path, None, 0.7))  # no seed
    none.append(Run("n4", tmp_path, 4, None, "failed"))
    question = Question("pneumoniamnist", ("resnet", "", ""), "resnet", "test/auroc", tuple(none), tuple(global_))
    result = compare(question)
    assert [pair.seed for pair in result.pairs] == [0, 1, 2]
    # Over seeds: differences 0.20, 0.21, 0.22 -> mean 0.21, sd 0.01.
    assert result.over_seeds.mean == pytest.approx(0.21)
    assert result.over_seeds.ci_high == pytest.approx(0.21 + T_975_DF2 * 0.01 / math.sqrt(3))
    assert result.image_seeds == [0, 1] and result.task == st.BINARY and result.n_images == 60
    assert all(pair.images is not None and pair.delong is not None for pair in result.pairs)
    assert result.images.delta == pytest.approx(np.mean([p.images.delta for p in result.pairs[:2]]))
    assert result.notes == [
        "none job nx has no seed in its config: not paired",
        "seed 3 not paired: 2 global jobs (g3a, g3b): ambiguous",
        "seed 4 not paired: none failed (n4); no global job",
        "seed(s) 2 were tested on other test images than seed(s) 0, 1: per seed only, not pooled",
    ]
