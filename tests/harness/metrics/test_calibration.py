"""Top-label ECE against torchmetrics; the paper's median-variance ECE against a transcription."""

from __future__ import annotations

import bisect
import statistics
from fractions import Fraction

import numpy as np
import pytest
import torch
from metric_cases import DTYPES, random_classification
from torchmetrics.classification import MulticlassCalibrationError

from harness import metrics as M


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
