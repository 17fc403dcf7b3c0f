"""OOD detection scores against scikit-learn, ties included."""

from __future__ import annotations

import math

import numpy as np
import pytest
from metric_cases import DTYPES, random_classification
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from harness import metrics as M


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


def permuted_bases(seed: int, n: int, alpha: float, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Rows that are class permutations of 6 base distributions: exact ties, known entropies."""
    rng = np.random.default_rng(seed)
    bases = rng.dirichlet(np.full(10, alpha), size=6).astype(dtype)
    which = rng.integers(0, 6, size=n)
    rows = np.stack([rng.permutation(bases[b]) for b in which])
    b64 = bases.astype(np.float64)
    entropy = np.array([math.fsum(-v * math.log(v) for v in row if v > 0) for row in b64])
    return rows, entropy[which]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("score", ["entropy", "max_prob"])
@pytest.mark.parametrize("tied", [False, True])
def test_ood_scores_by_each_score_match_sklearn(dtype, score, tied):
    if tied:  # every score value shared by many examples, in and out of distribution
        probs_in, h_in = permuted_bases(7, 300, 0.3, dtype)
        probs_out, h_out = permuted_bases(8, 150, 1.0, dtype)
        probs_out[:40] = probs_in[:40]  # some OOD rows equal in-distribution ones
        h_out[:40] = h_in[:40]
    else:
        probs_in, _ = random_classification(7, 300, 10, dtype, alpha=0.3)
        probs_out, _ = random_classification(8, 150, 10, dtype, alpha=1.5)
        h_in, h_out = (
            np.array([math.fsum(-v * math.log(v) for v in row if v > 0) for row in p])
            for p in (probs_in.astype(np.float64), probs_out.astype(np.float64))
        )
    p_in, p_out = probs_in.astype(np.float64), probs_out.astype(np.float64)
    s_in, s_out = (h_in, h_out) if score == "entropy" else (1 - p_in.max(1), 1 - p_out.max(1))
    y = np.r_[np.zeros(len(s_in)), np.ones(len(s_out))]
    scores = np.r_[s_in, s_out]
    result = M.ood_scores(probs_in, probs_out, score=score)
    assert result["auroc"] == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    assert result["aupr"] == pytest.approx(average_precision_score(y, scores), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, scores, drop_intermediate=False)
    assert result["fpr95"] == pytest.approx(fpr[np.argmax(tpr >= 0.95)], abs=1e-12)
    np.testing.assert_allclose(M.detection_scores(probs_in, score), s_in, rtol=1e-12, atol=1e-15)
    assert result["auroc"] > 0.55


def test_max_prob_score_is_one_minus_the_confidence():
    probs = np.array([[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3], [0.0, 1.0, 0.0]])
    np.testing.assert_allclose(M.detection_scores(probs, "max_prob"), [0.3, 2 / 3, 0.0])
    with pytest.raises(ValueError, match="unknown OOD score 'energy'"):
        M.detection_scores(probs, "energy")


def test_entropy_of_permuted_distributions_ties_exactly():
    rng = np.random.default_rng(9)
    row = rng.dirichlet(np.ones(10))
    rows = np.stack([rng.permutation(row) for _ in range(50)])
    assert len(set(M.predictive_entropy(rows).tolist())) == 1
