"""Selective prediction: accuracy as the least confident examples are rejected, and its areas.

A classifier that may abstain rejects the examples it is least sure of. With confidence
``c_n = max_k p_nk`` and correctness ``a_n = 1[argmax_k p_nk = y_n]``, let ``A(k)`` be the accuracy
on the ``k`` most confident examples (``1 <= k <= N``):

- the **accuracy–rejection curve** is ``A(N - floor(r N))`` against the rejected fraction ``r``
  (0 … 99 % by default), as in the authors' evaluation code (``get_sorted_accuracies`` in
  ``lib/utils.jl`` of ``christian-helms/mpbnns``);
- its **area** is the trapezoidal area of ``A(N), A(N-1), …, A(1)`` on a uniform grid over
  ``[0, 1]`` (the same code's ``area_under_curve``); higher is better;
- **AURC** is the area under the risk–coverage curve, ``(1/N) sum_k (1 - A(k))`` (Geifman et al.
  2019, "Bias-reduced uncertainty estimation for deep neural classifiers"); lower is better;
- **E-AURC** subtracts the AURC of the best possible ranking of the same predictions (every
  correct example before every wrong one), leaving only the cost of the ranking.

Ties: examples of equal confidence are ranked in uniformly random order and every quantity is
its exact expectation over that order (a tie group straddling the cut contributes its mean
accuracy pro rata), so results do not depend on the order of the inputs. Without ties this is
the plain sort by decreasing confidence.
"""

from __future__ import annotations

import math

import numpy as np

from harness.metrics.checks import ArrayLike, check_classification

__all__ = [
    "REJECTION_GRID",
    "REJECTION_LEVELS",
    "accuracy_rejection_area",
    "accuracy_rejection_curve",
    "aurc",
    "excess_aurc",
    "retained_accuracy",
    "selective_metrics",
]

REJECTION_GRID: np.ndarray = np.arange(100) / 100.0
"""Rejected fractions of the accuracy–rejection curve: 0, 0.01, …, 0.99."""

REJECTION_LEVELS: tuple[float, ...] = (0.1, 0.25, 0.5)
"""Rejected fractions at which :func:`selective_metrics` reports the accuracy."""


def _expected_correct(probs: ArrayLike, labels: ArrayLike) -> np.ndarray:
    """``C[k]``: expected number of correct among the ``k`` most confident, ``k = 0 .. N``."""
    p, y = check_classification(probs, labels)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    order = np.argsort(-conf, kind="stable")
    conf, correct = conf[order], correct[order]
    # tie groups of equal confidence, in decreasing confidence
    starts = np.flatnonzero(np.r_[True, conf[1:] != conf[:-1]])
    sizes = np.diff(np.r_[starts, len(conf)])
    group_correct = np.add.reduceat(correct, starts)
    before = np.r_[0.0, np.cumsum(group_correct)[:-1]]  # correct in earlier groups
    group = np.repeat(np.arange(len(starts)), sizes)  # group of sorted position i
    position = np.arange(1, len(conf) + 1) - starts[group]  # 1-based within its group
    cumulative = before[group] + position * group_correct[group] / sizes[group]
    return np.r_[0.0, cumulative]


def retained_accuracy(probs: ArrayLike, labels: ArrayLike) -> np.ndarray:
    """Accuracy on the ``k`` most confident examples, for every ``k = 1 .. N``.

    Args:
        probs: Predictive probabilities ``(N, K)``.
        labels: Class indices ``(N,)``.

    Returns:
        ``A`` of shape ``(N,)`` with ``A[k - 1]`` the (tie-averaged) accuracy of the top ``k``.
    """
    counts = _expected_correct(probs, labels)
    return counts[1:] / np.arange(1, len(counts))


def accuracy_rejection_curve(
    probs: ArrayLike, labels: ArrayLike, rejection: ArrayLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy on the retained examples as the least confident fraction ``r`` is rejected.

    ``floor(r N)`` examples are rejected (at least one is always kept, since ``r < 1``).

    Args:
        probs: Predictive probabilities ``(N, K)``.
        labels: Class indices ``(N,)``.
        rejection: Rejected fractions in ``[0, 1)``; default :data:`REJECTION_GRID`.

    Returns:
        ``(rejection, accuracy)``, both float64 of the same length.

    Raises:
        ValueError: On invalid inputs or a fraction outside ``[0, 1)``.
    """
    r = REJECTION_GRID if rejection is None else np.asarray(rejection, dtype=np.float64)
    if r.ndim != 1 or np.any(~np.isfinite(r)) or np.any((r < 0) | (r >= 1)):
        raise ValueError(f"rejection fractions must lie in [0, 1), got {r!r}")
    accuracy = retained_accuracy(probs, labels)
    n = len(accuracy)
    rejected = np.floor(np.round(r * n, 9)).astype(np.int64)  # round away float noise (0.29*100)
    return r.copy(), accuracy[n - rejected - 1]


def accuracy_rejection_area(probs: ArrayLike, labels: ArrayLike) -> float:
    """Trapezoidal area under the full accuracy–rejection curve (the reference's definition).

    ``A(N), A(N-1), …, A(1)`` are placed on a uniform grid of ``[0, 1]`` (spacing ``1/(N-1)``);
    a single example gives ``A(1)``.

    Args:
        probs: Predictive probabilities ``(N, K)``.
        labels: Class indices ``(N,)``.

    Returns:
        The area in ``[0, 1]``; the accuracy of every retained set, on average.
    """
    accuracy = retained_accuracy(probs, labels)
    if len(accuracy) == 1:
        return float(accuracy[0])
    inner = accuracy[1:-1].sum()
    return float((0.5 * accuracy[0] + inner + 0.5 * accuracy[-1]) / (len(accuracy) - 1))


def aurc(probs: ArrayLike, labels: ArrayLike) -> float:
    """Area under the risk–coverage curve, ``(1/N) sum_{k=1}^{N} (1 - A(k))``.

    Args:
        probs: Predictive probabilities ``(N, K)``.
        labels: Class indices ``(N,)``.

    Returns:
        The AURC in ``[0, 1]``; lower is better.
    """
    return float(np.mean(1.0 - retained_accuracy(probs, labels)))


def excess_aurc(probs: ArrayLike, labels: ArrayLike) -> float:
    """AURC minus that of the ideal ranking of the same predictions (E-AURC, Geifman et al. 2019).

    The ideal ranking puts all ``m`` correct examples first, so its risk at coverage ``k`` is
    ``max(0, k - m) / k``.

    Args:
        probs: Predictive probabilities ``(N, K)``.
        labels: Class indices ``(N,)``.

    Returns:
        The E-AURC, ``>= 0``; lower is better.
    """
    counts = _expected_correct(probs, labels)
    n, m = len(counts) - 1, counts[-1]
    k = np.arange(1, n + 1)
    ideal = np.mean(np.maximum(0.0, k - m) / k)
    return float(np.mean(1.0 - counts[1:] / k) - ideal)


def selective_metrics(probs: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    """Selective-prediction metrics under stable key names.

    Keys:
        ``ar_area``: :func:`accuracy_rejection_area`. ``aurc``: :func:`aurc`. ``eaurc``:
        :func:`excess_aurc`. ``accuracy_reject_<p>``: accuracy after rejecting ``p`` % of the
        examples, for ``p`` in :data:`REJECTION_LEVELS` (10, 25, 50).

    Args:
        probs: Predictive probabilities ``(N, K)``.
        labels: Class indices ``(N,)``.

    Returns:
        A dict from metric name to value.
    """
    _, accuracy = accuracy_rejection_curve(probs, labels, np.asarray(REJECTION_LEVELS))
    out = {
        "ar_area": accuracy_rejection_area(probs, labels),
        "aurc": aurc(probs, labels),
        "eaurc": excess_aurc(probs, labels),
    }
    for level, value in zip(REJECTION_LEVELS, accuracy, strict=True):
        out[f"accuracy_reject_{math.floor(level * 100 + 0.5)}"] = float(value)
    return out
