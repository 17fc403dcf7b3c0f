from __future__ import annotations

import bisect
import math
import statistics
from fractions import Fraction

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from sklearn.metrics import (
    average_precision_score,
    roc_auc_score,
    roc_curve,
    top_k_accuracy_score,
)
from torchmetrics.classification import MulticlassCalibrationError

from harness import metrics as M

DTYPES = [np.float64, np.float32]
TOL = {np.float64: 1e-12, np.float32: 1e-6}


def random_classification(seed: int, n: int, k: int, dtype=np.float64, alpha: float = 0.7):
    """Dirichlet probabilities and labels drawn from a tempered version of them."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(k, alpha), size=n)
    tempered = probs**1.5 / np.sum(probs**1.5, axis=1, keepdims=True)
    labels = np.array([rng.choice(k, p=row) for row in tempered])
    return probs.astype(dtype), labels


# ----------------------------------------------------------------------------- accuracy, NLL, Brier


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 3, 5])
def test_top_k_accuracy_matches_sklearn(dtype, k):
    probs, labels = random_classification(0, 500, 7, dtype)
    expected = top_k_accuracy_score(labels, probs, k=k, labels=np.arange(7))
    assert M.top_k_accuracy(probs, labels, k) == pytest.approx(expected, abs=1e-12)
    if k == 1:
        assert M.accuracy(probs, labels) == pytest.approx(expected, abs=1e-12)


def test_ties_go_to_the_first_class():
    probs = np.array([[0.4, 0.4, 0.2], [0.4, 0.4, 0.2], [0.2, 0.4, 0.4]])
    labels = np.array([1, 0, 2])
    assert M.accuracy(probs, labels) == pytest.approx(1 / 3)  # argmax = 0, 0, 1
    assert M.top_k_accuracy(probs, labels, 1) == pytest.approx(1 / 3)
    assert M.top_k_accuracy(probs, labels, 2) == pytest.approx(1.0)
    assert M.top_k_accuracy(probs[:1], labels[:1] * 0 + 2, 2) == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_nll_and_brier_match_direct_loops(dtype):
    probs, labels = random_classification(1, 300, 6, dtype)
    p = probs.astype(np.float64)
    nll = np.mean([-math.log(p[i, y]) for i, y in enumerate(labels)])
    brier = np.mean(
        [sum((p[i, c] - (c == y)) ** 2 for c in range(6)) for i, y in enumerate(labels)]
    )
    assert M.nll(probs, labels) == pytest.approx(nll, rel=1e-12)
    assert M.brier(probs, labels) == pytest.approx(brier, rel=1e-12)


def test_nll_floor_and_brier_extremes():
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    labels = np.array([0, 0, 1])
    floor = -math.log(2.220446049250313e-16)  # 36.04 nats
    assert M.NLL_FLOOR == 2.220446049250313e-16
    assert M.nll(probs, labels) == pytest.approx((0.0 + floor + math.log(2)) / 3, rel=1e-14)
    assert M.nll(np.array([[1 - 1e-300, 1e-300]]), np.array([1])) == pytest.approx(floor)
    # correct one-hot: 0, wrong one-hot: 2, uniform over two classes: 0.25 + 0.25
    assert M.brier(probs, labels) == pytest.approx((0.0 + 2.0 + 0.5) / 3)


# ----------------------------------------------------------------------------- top-label ECE


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_bins", [10, 15, 20])
def test_ece_top_label_matches_torchmetrics(dtype, n_bins):
    for seed, alpha in [(2, 0.3), (3, 1.0), (4, 3.0)]:
        probs, labels = random_classification(seed, 2000, 10, dtype, alpha)
        assert probs.max() < 1.0  # exactly 1.0 is binned differently, see the next test
        reference = MulticlassCalibrationError(num_classes=10, n_bins=n_bins, norm="l1")(
            torch.from_numpy(probs), torch.from_numpy(labels)
        )
        ours = M.ece_top_label(torch.from_numpy(probs), torch.from_numpy(labels), n_bins)
        assert ours == pytest.approx(reference.item(), abs=1e-6)  # torchmetrics works in float32
        assert ours > 1e-3


def test_ece_top_label_confidence_exactly_one():
    """A confidence of 1.0 joins the last bin here; torchmetrics 1.9 gives it a bin of its own."""
    probs = np.array([[1.0, 0.0, 0.0], [0.95, 0.05, 0.0], [0.96, 0.04, 0.0]])
    labels = np.array([1, 0, 0])
    # ours: one bin (0.9, 1.0] with accuracy 2/3 and mean confidence 0.97
    assert M.ece_top_label(probs, labels, 10) == pytest.approx(abs(2 / 3 - 0.97), abs=1e-12)
    # torchmetrics: bin [0.9, 1.0) holds two correct examples, the hidden bin holds the wrong one
    torchmetrics_value = 2 / 3 * abs(1.0 - 0.955) + 1 / 3 * abs(0.0 - 1.0)
    reference = MulticlassCalibrationError(num_classes=3, n_bins=10, norm="l1")(
        torch.from_numpy(probs), torch.from_numpy(labels)
    )
    assert reference.item() == pytest.approx(torchmetrics_value, abs=1e-6)
    assert abs(reference.item() - M.ece_top_label(probs, labels, 10)) > 0.05


def test_ece_top_label_bins_are_closed_on_the_right():
    # With 2 bins, 0.5 belongs to (0, 0.5] and 0.7 to (0.5, 1].
    probs = np.array([[0.5, 0.5], [0.7, 0.3]])
    labels = np.array([0, 1])
    assert M.ece_top_label(probs, labels, 2) == pytest.approx((0.5 + 0.7) / 2)
    # one bin: |mean accuracy - mean confidence|
    assert M.ece_top_label(probs, labels, 1) == pytest.approx(abs(0.5 - 0.6))


# ----------------------------------------------------------------------------- median-variance ECE


def slow_partition(probs: np.ndarray, min_size: int) -> list[list[int]]:
    """Literal recursive transcription of MedianVarianceBinning, exact variances via Fractions."""
    vectors = [[float(v) for v in row] for row in probs]
    n_classes = len(vectors[0])

    def split(idx: list[int]) -> list[list[int]]:
        n = len(idx)
        if n < 2 * min_size:
            return [sorted(idx)]
        variances = [statistics.variance([vectors[i][d] for i in idx]) for d in range(n_classes)]
        dim = variances.index(max(variances))
        order = sorted(idx, key=lambda i: vectors[i][dim])
        values = [vectors[i][dim] for i in order]
        m = n // 2 + 1  # 1-based position of the upper median in the sorted values
        if values[m - 2] < values[m - 1]:
            cutoff = m - 1
        else:  # number of values strictly below the median among the first m - 1
            cutoff = bisect.bisect_left(values[: m - 1], values[m - 1])
        below, above = order[:cutoff], order[cutoff:]
        if len(below) < min_size or len(above) < min_size:
            return [sorted(idx)]
        return split(below) + split(above)

    return split(list(range(len(vectors))))


def slow_ece(probs: np.ndarray, labels: np.ndarray, min_size: int) -> float:
    total = Fraction(0)
    n_classes = probs.shape[1]
    for b in slow_partition(probs, min_size):
        for c in range(n_classes):
            mean_p = sum(Fraction(float(probs[i, c])) for i in b) / len(b)
            freq = Fraction(sum(int(labels[i] == c) for i in b), len(b))
            total += len(b) * (mean_p - freq) ** 2
    return float(total / len(labels))


def as_sets(partition) -> set[frozenset[int]]:
    return {frozenset(int(i) for i in b) for b in partition}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("seed", "n", "k", "min_size"),
    [(0, 40, 3, 2), (1, 97, 4, 3), (2, 200, 3, 5), (3, 150, 10, 7), (4, 400, 5, 20), (5, 7, 3, 1)],
)
def test_median_variance_matches_slow_reference(dtype, seed, n, k, min_size):
    probs, labels = random_classification(seed, n, k, dtype)
    partition = M.median_variance_partition(probs, min_size)
    assert as_sets(partition) == as_sets(slow_partition(probs, min_size))
    assert sorted(np.concatenate(partition).tolist()) == list(range(n))
    assert min(len(b) for b in partition) >= min_size
    expected = slow_ece(probs, labels, min_size)
    assert M.ece_median_variance(probs, labels, min_size) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(("seed", "n_distinct", "min_size"), [(0, 3, 4), (1, 5, 3), (2, 2, 10)])
def test_median_variance_with_repeated_vectors(seed, n_distinct, min_size):
    rng = np.random.default_rng(seed)
    distinct, _ = random_classification(seed, n_distinct, 4)
    probs = distinct[rng.integers(0, n_distinct, size=90)]
    labels = rng.integers(0, 4, size=90)
    assert as_sets(M.median_variance_partition(probs, min_size)) == as_sets(
        slow_partition(probs, min_size)
    )
    expected = slow_ece(probs, labels, min_size)
    assert M.ece_median_variance(probs, labels, min_size) == pytest.approx(expected, rel=1e-9)


def test_median_variance_hand_cases():
    p0 = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    probs = np.stack([p0, (1 - p0) / 2, (1 - p0) / 2], axis=1)
    assert as_sets(M.median_variance_partition(probs, 2)) == as_sets(
        [[0, 1], [2, 3], [4, 5], [6, 7]]
    )
    # odd size: the upper median (rank n // 2) starts the upper half
    assert as_sets(M.median_variance_partition(probs[:7], 3)) == as_sets([[0, 1, 2], [3, 4, 5, 6]])
    # ties at the median are kept together; a half below min_size keeps the bin whole
    p0 = np.array([0.1, 0.5, 0.5, 0.5, 0.5, 0.9])
    tied = np.stack([p0, (1 - p0) / 2, (1 - p0) / 2], axis=1)
    assert as_sets(M.median_variance_partition(tied, 2)) == as_sets([range(6)])
    assert as_sets(M.median_variance_partition(tied, 1)) == as_sets([[0], [1, 2, 3, 4, 5]])


@pytest.mark.parametrize("n", [20, 39])
def test_median_variance_single_bin_closed_form(n):
    probs, labels = random_classification(9, n, 4)
    assert len(M.median_variance_partition(probs, 20)) == 1
    diff = probs.mean(axis=0) - np.bincount(labels, minlength=4) / n
    assert M.ece_median_variance(probs, labels) == pytest.approx(float(diff @ diff), rel=1e-12)


# ----------------------------------------------------------------------------- OOD detection


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("seed", "levels"), [(0, None), (1, 5), (2, 30)])
def test_auroc_and_aupr_match_sklearn(dtype, seed, levels):
    rng = np.random.default_rng(seed)
    neg = rng.normal(0.0, 1.0, size=300)
    pos = rng.normal(0.7, 1.3, size=170)
    if levels is not None:  # heavy ties, also across the two classes
        neg, pos = np.round(neg * levels / 4), np.round(pos * levels / 4)
    neg, pos = neg.astype(dtype), pos.astype(dtype)
    y = np.r_[np.zeros(len(neg)), np.ones(len(pos))]
    scores = np.r_[neg, pos]
    assert M.auroc(neg, pos) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    assert M.average_precision(neg, pos) == pytest.approx(
        average_precision_score(y, scores), abs=1e-12
    )
    fpr, tpr, _ = roc_curve(y, scores, drop_intermediate=False)
    assert M.fpr_at_tpr(neg, pos) == pytest.approx(fpr[np.argmax(tpr >= 0.95)], abs=1e-12)


def test_fpr95_hand_case():
    pos = np.arange(1.0, 21.0)  # 20 positives: 19 of them (95%) have score >= 2
    neg = np.array([0.0, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0])
    assert M.fpr_at_tpr(neg, pos) == pytest.approx(0.7)  # scores >= 2 count as detected
    assert M.fpr_at_tpr(neg, pos, tpr=1.0) == pytest.approx(0.9)
    assert M.fpr_at_tpr(neg - 10, pos) == 0.0


def test_ood_scores_use_entropy_with_ood_positive():
    probs_in, _ = random_classification(5, 200, 10, alpha=0.2)
    probs_out, _ = random_classification(6, 120, 10, alpha=2.0)
    h_in, h_out = stats.entropy(probs_in, axis=1), stats.entropy(probs_out, axis=1)
    np.testing.assert_allclose(M.predictive_entropy(probs_in), h_in, rtol=1e-12)
    y = np.r_[np.zeros(200), np.ones(120)]
    result = M.ood_scores(probs_in, probs_out)
    assert result["auroc"] == pytest.approx(roc_auc_score(y, np.r_[h_in, h_out]))
    assert result["aupr"] == pytest.approx(average_precision_score(y, np.r_[h_in, h_out]))
    assert result["auroc"] > 0.8
    assert M.predictive_entropy(np.array([[1.0, 0.0]]))[0] == 0.0


# ----------------------------------------------------------------------------- dictionaries


def test_classification_metrics_dict():
    probs, labels = random_classification(7, 300, 10)
    probs_ood, _ = random_classification(8, 50, 10, alpha=3.0)
    out = M.classification_metrics(torch.from_numpy(probs), torch.from_numpy(labels), probs_ood)
    assert set(out) == {
        "n", "accuracy", "top5_accuracy", "nll", "brier", "ece_15", "ece_20", "ece_mv",
        "entropy_mean", "ood_auroc", "ood_aupr", "ood_fpr95",
    }  # fmt: skip
    assert out["ece_15"] == M.ece_top_label(probs, labels, 15)
    assert out["ece_20"] == M.ece_top_label(probs, labels, 20)
    assert out["ece_mv"] == M.ece_median_variance(probs, labels, 20)
    assert out["top5_accuracy"] == M.top_k_accuracy(probs, labels, 5)
    assert out["ood_auroc"] == M.ood_scores(probs, probs_ood)["auroc"]
    assert all(isinstance(v, float) for v in out.values())
    small = M.classification_metrics(
        probs[:10, :3] / probs[:10, :3].sum(1, keepdims=True), labels[:10] % 3
    )
    assert math.isnan(small["ece_mv"])
    assert "ood_auroc" not in small


# ----------------------------------------------------------------------------- regression


@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_nll_rmse_width(dtype):
    rng = np.random.default_rng(10)
    mean, var = rng.normal(size=(50, 3)), rng.uniform(0.1, 2.0, size=(50, 3))
    y = rng.normal(size=(50, 3))
    mean, var, y = mean.astype(dtype), var.astype(dtype), y.astype(dtype)
    m64, v64, y64 = (a.astype(np.float64) for a in (mean, var, y))
    logpdf = stats.norm.logpdf(y64, m64, np.sqrt(v64))
    tol = TOL[dtype]
    assert M.gaussian_nll(mean, var, y) == pytest.approx(-logpdf.sum(1).mean(), rel=tol)
    assert M.gaussian_nll(mean[:, 0], var[:, 0], y[:, 0]) == pytest.approx(-logpdf[:, 0].mean())
    assert M.rmse(mean, y) == pytest.approx(math.sqrt(np.mean((m64 - y64) ** 2)), rel=tol)
    assert M.mean_interval_width(var, 2) == pytest.approx(4 * np.sqrt(v64).mean(), rel=tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_crps_matches_numerical_integration(dtype):
    rng = np.random.default_rng(11)
    mean, sd = rng.normal(size=8), rng.uniform(0.2, 3.0, size=8)
    y = mean + sd * np.array([-4.0, -1.5, -0.3, 0.0, 0.1, 0.9, 2.2, 5.0])
    mean, sd, y = mean.astype(dtype), sd.astype(dtype), y.astype(dtype)
    for mu, s, t in zip(mean.astype(float), sd.astype(float), y.astype(float), strict=True):
        below, _ = integrate.quad(lambda x, mu=mu, s=s: stats.norm.cdf(x, mu, s) ** 2, -np.inf, t)
        above, _ = integrate.quad(lambda x, mu=mu, s=s: stats.norm.sf(x, mu, s) ** 2, t, np.inf)
        crps = M.crps_gaussian(np.array([mu]), np.array([s * s]), np.array([t]))
        assert crps == pytest.approx(below + above, rel=1e-7)
    per_entry = [
        M.crps_gaussian(mean[i : i + 1], sd[i : i + 1] ** 2, y[i : i + 1]) for i in range(8)
    ]
    assert M.crps_gaussian(mean, sd**2, y) == pytest.approx(np.mean(per_entry), rel=1e-12)


def test_picp_matches_gaussian_coverage():
    rng = np.random.default_rng(12)
    n = 200_000
    mean, var = rng.normal(size=n), rng.uniform(0.05, 4.0, size=n)
    y = mean + np.sqrt(var) * rng.standard_normal(n)  # targets drawn from the predictive itself
    for k in (1, 2, 3):
        nominal = stats.norm.cdf(k) - stats.norm.cdf(-k)  # 0.6827, 0.9545, 0.9973
        assert M.picp(mean, var, y, k) == pytest.approx(nominal, abs=5 * math.sqrt(nominal / n))
    # exactly representable edge |y - mu| = 2 sigma counts as inside
    assert M.picp(np.array([0.5, 0.5]), np.array([0.25, 0.25]), np.array([1.5, 1.75]), 2) == 0.5
    out = M.regression_metrics(mean[:100], var[:100], y[:100])
    assert set(out) == {
        "n",
        "rmse",
        "nll",
        "crps",
        *(f"{m}_{k}" for m in ("picp", "width") for k in (1, 2, 3)),
    }
    assert out["picp_2"] == M.picp(mean[:100], var[:100], y[:100], 2)


# ----------------------------------------------------------------------------- error paths

P = np.array([[0.2, 0.8], [0.6, 0.4]])
Y = np.array([1, 0])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: M.accuracy(P[0], Y), r"probs must have 2 dimensions"),
        (lambda: M.accuracy(np.ones((2, 1)), Y), r"at least 2 classes"),
        (lambda: M.accuracy(np.array([[np.nan, 1.0], [0.5, 0.5]]), Y), r"NaN or infinite"),
        (lambda: M.accuracy(np.array([[np.inf, 1.0], [0.5, 0.5]]), Y), r"NaN or infinite"),
        (lambda: M.nll(np.array([[-0.1, 1.1], [0.5, 0.5]]), Y), r"negative entries.*softmax"),
        (lambda: M.brier(P * 1.01, Y), r"sum to 1.*divide each row by its sum"),
        (lambda: M.nll(P, np.array([1, 2])), r"labels must lie in 0\.\.1"),
        (lambda: M.nll(P, np.array([-1, 0])), r"labels must lie in"),
        (lambda: M.nll(P, np.array([1.0, 0.0])), r"labels must be integers"),
        (lambda: M.nll(P, np.array([1, 0, 1])), r"labels must have shape \(2,\)"),
        (lambda: M.nll(np.zeros((0, 2)), np.array([], dtype=int)), r"probs is empty"),
        (lambda: M.top_k_accuracy(P, Y, 3), r"k must be in 1\.\.2"),
        (lambda: M.ece_top_label(P, Y, 0), r"n_bins must be a positive"),
        (lambda: M.ece_median_variance(P, Y, 20), r"at least min_size=20 examples"),
        (lambda: M.ood_scores(P, np.full((3, 3), 1 / 3)), r"probs_out has 3"),
        (lambda: M.fpr_at_tpr([0.0], [1.0], 0.0), r"tpr must be in"),
        (lambda: M.auroc([], [1.0]), r"scores_neg is empty"),
        (lambda: M.rmse(np.zeros(3), np.zeros(4)), r"targets shape \(4,\) differs"),
        (lambda: M.gaussian_nll(np.zeros(3), np.zeros(3), np.zeros(3)), r"var must be positive"),
        (lambda: M.picp(np.zeros(2), -np.ones(2), np.zeros(2)), r"var must be positive"),
        (lambda: M.crps_gaussian(np.zeros(2), np.ones(3), np.zeros(2)), r"var shape \(3,\)"),
        (lambda: M.rmse(np.array([np.nan, 0.0]), np.zeros(2)), r"mean contains 1 NaN"),
        (lambda: M.rmse(np.zeros((2, 2, 2)), np.zeros((2, 2, 2))), r"mean must have 1 or 2"),
    ],
)
def test_invalid_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()
