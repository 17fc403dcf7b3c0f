"""Out-of-distribution detection: scores, AUROC, average precision and FPR at 95 % TPR.

Detection scores are "higher means out-of-distribution"; OOD examples are the positives.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special, stats

from harness.metrics.checks import ArrayLike, check_probs, check_scores

__all__ = [
    "FPR_TPR_LEVEL",
    "OOD_SCORES",
    "auroc",
    "average_precision",
    "detection_scores",
    "fpr_at_tpr",
    "ood_scores",
    "predictive_entropy",
]

FPR_TPR_LEVEL: float = 0.95
"""True-positive rate at which the false-positive rate ``ood_fpr95`` is read off."""

OOD_SCORES: tuple[str, ...] = ("entropy", "max_prob")
"""Detection scores of :func:`detection_scores`."""


def predictive_entropy(probs: ArrayLike) -> np.ndarray:
    """Entropy ``-sum_k p_k log p_k`` in nats of each predictive distribution (``0 log 0 = 0``).

    The terms are summed in sorted order, so that two distributions that differ only in the
    order of their classes get bit-identical entropies: exact ties stay ties for the rank
    statistics of :func:`auroc` and :func:`average_precision` instead of being broken by
    rounding.

    Args:
        probs: Predictive probabilities ``(N, K)``.

    Returns:
        Entropies ``(N,)``, float64.
    """
    return np.sort(special.entr(check_probs(probs)), axis=1).sum(axis=1)


def auroc(scores_neg: ArrayLike, scores_pos: ArrayLike) -> float:
    """Area under the ROC curve for "higher score means positive" (Mann-Whitney statistic).

    ``AUROC = P(s_pos > s_neg) + P(s_pos = s_neg) / 2``, computed from average ranks over the
    pooled scores; equals scikit-learn's ``roc_auc_score`` including ties.

    Args:
        scores_neg: Scores of negative examples ``(N,)``.
        scores_pos: Scores of positive examples ``(M,)``.

    Returns:
        The AUROC in ``[0, 1]``.
    """
    neg, pos = check_scores(scores_neg, "scores_neg"), check_scores(scores_pos, "scores_pos")
    ranks = stats.rankdata(np.concatenate([neg, pos]), method="average")
    n_pos, n_neg = len(pos), len(neg)
    return float((ranks[n_neg:].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(scores_neg: ArrayLike, scores_pos: ArrayLike) -> float:
    """Area under the precision-recall curve as step-wise average precision.

    ``AP = sum_t (R_t - R_{t-1}) P_t`` over the distinct score thresholds ``t`` in decreasing
    order (``R_0 = 0``), with precision ``P_t`` and recall ``R_t`` of the rule "positive if
    score >= t"; the definition of scikit-learn's ``average_precision_score`` (no interpolation).

    Args:
        scores_neg: Scores of negative examples ``(N,)``.
        scores_pos: Scores of positive examples ``(M,)``.

    Returns:
        The average precision in ``[0, 1]``.
    """
    neg, pos = check_scores(scores_neg, "scores_neg"), check_scores(scores_pos, "scores_pos")
    scores = np.concatenate([neg, pos])
    is_pos = np.concatenate([np.zeros(len(neg)), np.ones(len(pos))])
    order = np.argsort(-scores, kind="stable")
    scores, is_pos = scores[order], is_pos[order]
    last_of_tie = np.append(scores[1:] != scores[:-1], True)
    tp = np.cumsum(is_pos)[last_of_tie]
    predicted = (np.arange(len(scores)) + 1.0)[last_of_tie]
    recall = tp / len(pos)
    return float(np.sum(np.diff(recall, prepend=0.0) * tp / predicted))


def fpr_at_tpr(scores_neg: ArrayLike, scores_pos: ArrayLike, tpr: float = FPR_TPR_LEVEL) -> float:
    """False-positive rate at the highest threshold that detects at least ``tpr`` of positives.

    With the positive scores sorted decreasingly, ``s_(1) >= s_(2) >= ...``, the threshold is
    ``t = s_(j)`` with ``j = ceil(tpr * M)``; then ``FPR = #{negatives with score >= t} / N``.
    Ties at ``t`` count as detected on both sides.

    Args:
        scores_neg: Scores of negative examples ``(N,)``.
        scores_pos: Scores of positive examples ``(M,)``.
        tpr: Required true-positive rate, in ``(0, 1]``.

    Returns:
        The false-positive rate in ``[0, 1]``.
    """
    neg, pos = check_scores(scores_neg, "scores_neg"), check_scores(scores_pos, "scores_pos")
    if not 0.0 < tpr <= 1.0:
        raise ValueError(f"tpr must be in (0, 1], got {tpr}")
    j = max(1, math.ceil(round(tpr * len(pos), 9)))  # round away float noise such as 0.95 * M
    threshold = np.sort(pos)[::-1][j - 1]
    return float(np.mean(neg >= threshold))


def detection_scores(probs: ArrayLike, score: str = "entropy") -> np.ndarray:
    """Per-example OOD scores, higher meaning "more likely out of distribution".

    Args:
        probs: Predictive probabilities ``(N, K)``.
        score: ``"entropy"`` (:func:`predictive_entropy`) or ``"max_prob"``
            (``1 - max_k p_k``, the maximum-softmax-probability baseline of Hendrycks and
            Gimpel 2017).

    Returns:
        Scores ``(N,)``, float64.

    Raises:
        ValueError: On invalid probabilities or an unknown ``score``.
    """
    if score not in OOD_SCORES:
        raise ValueError(f"unknown OOD score {score!r}; use one of {', '.join(OOD_SCORES)}")
    if score == "entropy":
        return predictive_entropy(probs)
    return 1.0 - check_probs(probs).max(axis=1)


def ood_scores(
    probs_in: ArrayLike, probs_out: ArrayLike, score: str = "entropy"
) -> dict[str, float]:
    """Out-of-distribution detection by one score; OOD examples are the positives.

    Args:
        probs_in: Predictive probabilities on in-distribution data ``(N, K)``.
        probs_out: Predictive probabilities on OOD data ``(M, K)``.
        score: ``"entropy"`` or ``"max_prob"`` (:func:`detection_scores`).

    Returns:
        ``{"auroc", "aupr", "fpr95"}``: :func:`auroc`, :func:`average_precision` and
        :func:`fpr_at_tpr` at 95% TPR, each with that score.
    """
    p_in, p_out = check_probs(probs_in, "probs_in"), check_probs(probs_out, "probs_out")
    if p_in.shape[1] != p_out.shape[1]:
        raise ValueError(
            f"probs_in has {p_in.shape[1]} classes but probs_out has "
            f"{p_out.shape[1]}; both must come from the same model head"
        )
    s_in, s_out = detection_scores(p_in, score), detection_scores(p_out, score)
    return {
        "auroc": auroc(s_in, s_out),
        "aupr": average_precision(s_in, s_out),
        "fpr95": fpr_at_tpr(s_in, s_out, FPR_TPR_LEVEL),
    }
