"""Accuracy, top-k accuracy, NLL, Brier and the metrics dictionary against direct computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from metric_cases import DTYPES, random_classification
from sklearn.metrics import top_k_accuracy_score

from harness import metrics as M


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


def test_classification_metrics_dict():
    probs, labels = random_classification(7, 300, 10)
    probs_ood, _ = random_classification(8, 50, 10, alpha=3.0)
    out = M.classification_metrics(torch.from_numpy(probs), torch.from_numpy(labels), probs_ood)
    assert set(out) == {
        "n", "accuracy", "top5_accuracy", "nll", "brier", "ece_15", "ece_20", "ece_mv",
        "entropy_mean", "confidence_mean", "overconfidence", "ar_area", "aurc", "eaurc",
        "accuracy_reject_10", "accuracy_reject_25", "accuracy_reject_50",
        "ood_auroc", "ood_aupr", "ood_fpr95",
    }  # fmt: skip
    assert out["confidence_mean"] == pytest.approx(probs.max(1).mean(), abs=1e-15)
    assert out["overconfidence"] == out["confidence_mean"] - out["accuracy"]
    assert out["aurc"] == M.aurc(probs, labels)
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


@pytest.mark.parametrize("dtype", DTYPES)
def test_summary_metrics_are_the_per_epoch_subset(dtype):
    probs, labels = random_classification(9, 400, 10, dtype)
    out = M.summary_metrics(probs, labels)
    full = M.classification_metrics(probs, labels)
    assert set(out) == {"accuracy", "nll", "ece_15", "ece_mv", "confidence_mean", "overconfidence"}
    for key, value in out.items():
        assert value == pytest.approx(full[key], abs=1e-15)
    conf = probs.astype(np.float64).max(1).mean()
    assert out["overconfidence"] == pytest.approx(conf - M.accuracy(probs, labels), abs=1e-12)
    assert math.isnan(M.summary_metrics(probs[:19], labels[:19])["ece_mv"])
