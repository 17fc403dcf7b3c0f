"""Accuracy–rejection curve, its area, AURC and E-AURC against direct loops, ties included."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from metric_cases import DTYPES, random_classification

from harness import metrics as M


def top_k_accuracies(conf: np.ndarray, correct: np.ndarray, priority: tuple[int, ...]) -> list:
    """Accuracy of the k most confident for k = 1..N, ties broken by ``priority`` (a loop)."""
    order = sorted(range(len(conf)), key=lambda i: (-conf[i], priority[i]))
    hits, out = 0, []
    for k, i in enumerate(order, start=1):
        hits += correct[i]
        out.append(hits / k)
    return out


def brute_force(probs: np.ndarray, labels: np.ndarray) -> dict[str, object]:
    """Every quantity averaged over all N! tie-breaking orders (each tie order equally likely)."""
    p = probs.astype(np.float64)
    conf, correct = p.max(axis=1), (p.argmax(axis=1) == labels).astype(int)
    n = len(labels)
    curves = np.array(
        [top_k_accuracies(conf, correct, perm) for perm in itertools.permutations(range(n))]
    )
    mean_curve = curves.mean(axis=0)  # A(k), k = 1..n
    if n == 1:
        areas = curves[:, 0]
    else:  # the reference's trapezoid over A(n), ..., A(1) with spacing 1/(n-1)
        areas = np.array([(c.sum() - 0.5 * c[0] - 0.5 * c[-1]) / (n - 1) for c in curves])
    aurcs = (1.0 - curves).mean(axis=1)
    m = correct.sum()
    ideal = np.mean([max(0, k - m) / k for k in range(1, n + 1)])
    return {"curve": mean_curve, "area": areas.mean(), "aurc": aurcs.mean(), "ideal": ideal}


def tied_case(seed: int, n: int, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities whose top class has only ``levels`` distinct confidences (many ties)."""
    rng = np.random.default_rng(seed)
    conf = rng.integers(1, levels + 1, size=n) / (levels + 1) * 0.6 + 0.4  # in (0.4, 1.0)
    top = rng.integers(0, 3, size=n)
    probs = np.full((n, 3), 0.0)
    probs[np.arange(n), top] = conf
    for i in range(n):  # split the rest over the other two classes, below the top one
        others = [c for c in range(3) if c != top[i]]
        probs[i, others] = (1 - conf[i]) / 2
    labels = np.where(rng.random(n) < 0.7, top, (top + 1) % 3)
    return probs, labels


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("seed", "n", "levels"), [(0, 6, 2), (1, 7, 3), (2, 5, 1), (3, 7, 7)])
def test_tie_averaged_quantities_match_every_tie_order(dtype, seed, n, levels):
    probs, labels = tied_case(seed, n, levels)
    probs = probs.astype(dtype)
    expected = brute_force(probs, labels)
    tol = 1e-12
    np.testing.assert_allclose(M.retained_accuracy(probs, labels), expected["curve"], atol=tol)
    assert M.accuracy_rejection_area(probs, labels) == pytest.approx(expected["area"], abs=tol)
    assert M.aurc(probs, labels) == pytest.approx(expected["aurc"], abs=tol)
    assert M.excess_aurc(probs, labels) == pytest.approx(
        expected["aurc"] - expected["ideal"], abs=tol
    )
    # the input order does not matter
    perm = np.random.default_rng(seed).permutation(n)
    assert M.aurc(probs[perm], labels[perm]) == pytest.approx(M.aurc(probs, labels), abs=tol)


def test_hand_case_without_ties():
    # confidences 0.9 (right), 0.8 (wrong), 0.7 (right), 0.6 (right), given in shuffled order
    probs = np.array([[0.3, 0.7], [0.9, 0.1], [0.4, 0.6], [0.8, 0.2]])
    labels = np.array([1, 0, 1, 1])
    np.testing.assert_allclose(M.retained_accuracy(probs, labels), [1, 1 / 2, 2 / 3, 3 / 4])
    assert M.aurc(probs, labels) == pytest.approx((0 + 1 / 2 + 1 / 3 + 1 / 4) / 4)
    assert M.excess_aurc(probs, labels) == pytest.approx((0 + 1 / 2 + 1 / 3 + 1 / 4) / 4 - 1 / 16)
    # trapezoid of A(4), A(3), A(2), A(1) = 3/4, 2/3, 1/2, 1 on a grid with spacing 1/3
    area = (0.5 * 3 / 4 + 2 / 3 + 1 / 2 + 0.5 * 1) / 3
    assert M.accuracy_rejection_area(probs, labels) == pytest.approx(area)
    r, acc = M.accuracy_rejection_curve(probs, labels, [0.0, 0.25, 0.5, 0.74, 0.75])
    np.testing.assert_allclose(acc, [3 / 4, 2 / 3, 1 / 2, 1 / 2, 1.0])
    np.testing.assert_array_equal(r, [0.0, 0.25, 0.5, 0.74, 0.75])


def test_hand_case_with_a_tie():
    # two examples tied at 0.8, one right and one wrong: the top-1 accuracy is 1/2 on average
    probs = np.array([[0.8, 0.2], [0.8, 0.2], [0.6, 0.4]])
    labels = np.array([0, 1, 0])
    np.testing.assert_allclose(M.retained_accuracy(probs, labels), [1 / 2, 1 / 2, 2 / 3])
    assert M.aurc(probs, labels) == pytest.approx((1 / 2 + 1 / 2 + 1 / 3) / 3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_curve_on_the_default_grid_matches_a_loop(dtype):
    probs, labels = random_classification(3, 250, 10, dtype)
    rejection, accuracy = M.accuracy_rejection_curve(probs, labels)
    np.testing.assert_array_equal(rejection, np.arange(100) / 100)
    p = probs.astype(np.float64)
    order = np.argsort(-p.max(axis=1), kind="stable")
    correct = (p.argmax(axis=1) == labels)[order]
    assert len(set(p.max(axis=1))) == 250  # no ties: the plain sort is exact
    for r, a in zip(rejection, accuracy, strict=True):
        kept = 250 - math.floor(round(r * 250, 9))
        assert a == pytest.approx(correct[:kept].mean(), abs=1e-12)
    assert accuracy[0] == pytest.approx(M.accuracy(probs, labels))
    # a more confident-when-right model has a rising curve and a lower AURC
    assert accuracy[-1] >= accuracy[0]


def test_float_noise_in_the_grid_is_rounded_away():
    probs, labels = random_classification(4, 100, 5)
    _, acc = M.accuracy_rejection_curve(probs, labels, [0.29, 0.57])
    full = M.retained_accuracy(probs, labels)
    assert acc[0] == full[100 - 29 - 1]  # 0.29 * 100 = 28.999999999999996 in floating point
    assert acc[1] == full[100 - 57 - 1]


def test_selective_metrics_dict_and_bounds():
    probs, labels = random_classification(5, 400, 10)
    out = M.selective_metrics(probs, labels)
    assert set(out) == {
        "ar_area",
        "aurc",
        "eaurc",
        "accuracy_reject_10",
        "accuracy_reject_25",
        "accuracy_reject_50",
    }
    _, acc = M.accuracy_rejection_curve(probs, labels, [0.1, 0.25, 0.5])
    assert [out[f"accuracy_reject_{p}"] for p in (10, 25, 50)] == acc.tolist()
    assert 0 <= out["eaurc"] <= out["aurc"] <= 1
    # a perfect ranking (confidence 1 when right, 0.6 on a wrong class otherwise): no excess
    right = probs.argmax(1) == labels
    wrong = 0.6 * np.eye(10)[(labels + 1) % 10] + 0.4 * np.eye(10)[labels]
    perfect = np.where(right[:, None], np.eye(10)[labels], wrong)
    assert 0 < right.mean() < 1
    assert M.excess_aurc(perfect, labels) == pytest.approx(0.0, abs=1e-12)
    assert M.aurc(perfect, labels) > 0
    assert M.accuracy_rejection_area(np.array([[0.2, 0.8]]), np.array([1])) == 1.0


@pytest.mark.parametrize("bad", [[1.0], [-0.1], [np.nan], [[0.1]]])
def test_rejection_outside_unit_interval_raises(bad):
    probs, labels = random_classification(6, 20, 3)
    with pytest.raises(ValueError, match=r"rejection fractions must lie in \[0, 1\)"):
        M.accuracy_rejection_curve(probs, labels, bad)
