"""Classification metrics: accuracy, top-k accuracy, NLL, Brier, and every metric in one dict.

Functions take predictive probabilities ``probs`` of shape ``(N, K)`` (for a Bayesian model the
Bayesian model average of the per-sample probabilities, never an average of per-sample metrics)
and integer labels ``(N,)`` in ``0 .. K-1``.
"""

from __future__ import annotations

import math

import numpy as np

from harness.metrics.calibration import (
    MV_MIN_SIZE,
    TOP_LABEL_BINS,
    ece_median_variance,
    ece_top_label,
)
from harness.metrics.checks import ArrayLike, check_classification, check_probs
from harness.metrics.ood import ood_scores, predictive_entropy
from harness.metrics.selective import selective_metrics

__all__ = [
    "NLL_FLOOR",
    "accuracy",
    "brier",
    "classification_metrics",
    "mean_confidence",
    "nll",
    "summary_metrics",
    "top_k_accuracy",
]

NLL_FLOOR: float = float(np.finfo(np.float64).eps)
"""Lower clamp on the label probability in :func:`nll`: float64 machine epsilon, 2.22e-16.

The reference evaluation (``get_eval_stats`` in the authors' Julia code) computes
``-log(max(p_label, eps(Float64)))``; an overconfident wrong prediction therefore costs at most
``-log(2.22e-16) = 36.04`` nats instead of infinity.
"""


def accuracy(probs: ArrayLike, labels: ArrayLike) -> float:
    """Top-1 accuracy; ties in ``probs`` go to the first maximal class (``numpy.argmax``).

    Args:
        probs: Predictive probabilities ``(N, K)``.
        labels: Class indices ``(N,)``.

    Returns:
        The fraction of examples whose arg-max class is the label.
    """
    p, y = check_classification(probs, labels)
    return float(np.mean(p.argmax(axis=1) == y))


def top_k_accuracy(probs: ArrayLike, labels: ArrayLike, k: int = 5) -> float:
    """Fraction of examples whose label is among the ``k`` most probable classes.

    Classes are ranked by decreasing probability, equal probabilities by increasing class index
    (so ``k = 1`` agrees with :func:`accuracy`).

    Args:
        probs: Predictive probabilities ``(N, K)``.
        labels: Class indices ``(N,)``.
        k: Number of top classes, ``1 <= k <= K``.

    Returns:
        The top-k accuracy.

    Raises:
        ValueError: On invalid inputs or ``k`` outside ``1..K``.
    """
    p, y = check_classification(probs, labels)
    if not 1 <= k <= p.shape[1]:
        raise ValueError(f"k must be in 1..{p.shape[1]} (number of classes), got {k}")
    p_label = p[np.arange(len(y)), y][:, None]
    earlier = np.arange(p.shape[1])[None, :] < y[:, None]
    rank = np.sum(p > p_label, axis=1) + np.sum((p == p_label) & earlier, axis=1)
    return float(np.mean(rank < k))


def nll(probs: ArrayLike, labels: ArrayLike) -> float:
    """Mean negative log-likelihood ``-log max(p_label, NLL_FLOOR)`` (spec E.2).

    Args:
        probs: Predictive probabilities ``(N, K)``.
        labels: Class indices ``(N,)``.

    Returns:
        The mean NLL in nats.
    """
    p, y = check_classification(probs, labels)
    return float(np.mean(-np.log(np.maximum(p[np.arange(len(y)), y], NLL_FLOOR))))


def brier(probs: ArrayLike, labels: ArrayLike) -> float:
    """Multiclass Brier score ``(1/N) sum_n sum_k (p_nk - 1[k = y_n])^2``, in ``[0, 2]``.

    Summed (not averaged) over classes, as in ivon-experiments and torch-uncertainty.

    Args:
        probs: Predictive probabilities ``(N, K)``.
        labels: Class indices ``(N,)``.

    Returns:
        The Brier score.
    """
    p, y = check_classification(probs, labels)
    onehot = np.eye(p.shape[1])[y]
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def mean_confidence(probs: ArrayLike) -> float:
    """Mean top-label confidence ``(1/N) sum_n max_k p_nk``.

    Args:
        probs: Predictive probabilities ``(N, K)``.

    Returns:
        The mean confidence; above the accuracy means overconfident on average.
    """
    return float(np.mean(check_probs(probs).max(axis=1)))


def summary_metrics(probs: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    """The cheap core of :func:`classification_metrics`, scored after every training epoch.

    Keys: ``accuracy``, ``nll``, ``ece_15`` (:func:`ece_top_label`, 15 bins), ``ece_mv``
    (:func:`ece_median_variance`; NaN below 20 examples), ``confidence_mean``
    (:func:`mean_confidence`) and ``overconfidence`` (``confidence_mean - accuracy``). About
    30 ms for 10,000 examples and 10 classes.

    Args:
        probs: Predictive probabilities ``(N, K)``.
        labels: Class indices ``(N,)``.

    Returns:
        A dict from metric name to value.
    """
    p, y = check_classification(probs, labels)
    acc, confidence = accuracy(p, y), mean_confidence(p)
    return {
        "accuracy": acc,
        "nll": nll(p, y),
        "ece_15": ece_top_label(p, y, 15),
        "ece_mv": ece_median_variance(p, y) if len(y) >= MV_MIN_SIZE else math.nan,
        "confidence_mean": confidence,
        "overconfidence": confidence - acc,
    }


def classification_metrics(
    probs: ArrayLike, labels: ArrayLike, probs_ood: ArrayLike | None = None
) -> dict[str, float]:
    """Every classification metric of the benchmark, under stable key names.

    Keys:
        ``n``: number of examples. ``accuracy``: :func:`accuracy`. ``top5_accuracy``:
        :func:`top_k_accuracy` with ``k = min(5, K)``. ``nll``: :func:`nll`. ``brier``:
        :func:`brier`. ``ece_15`` / ``ece_20``: :func:`ece_top_label` with 15 / 20 bins.
        ``ece_mv``: :func:`ece_median_variance` with ``min_size = 20`` (NaN if ``N < 20``).
        ``entropy_mean``: mean predictive entropy (nats). ``confidence_mean``:
        :func:`mean_confidence`. ``overconfidence``: ``confidence_mean - accuracy``.
        ``ar_area``, ``aurc``, ``eaurc``, ``accuracy_reject_10`` / ``_25`` / ``_50``:
        :func:`~harness.metrics.selective.selective_metrics`. With ``probs_ood`` also
        ``ood_auroc``, ``ood_aupr``, ``ood_fpr95`` from :func:`ood_scores` (entropy).

    Args:
        probs: Predictive probabilities ``(N, K)``.
        labels: Class indices ``(N,)``.
        probs_ood: Optional predictive probabilities on OOD data ``(M, K)``.

    Returns:
        A dict from metric name to value.
    """
    p, y = check_classification(probs, labels)
    out = {
        "n": float(len(y)),
        "accuracy": accuracy(p, y),
        "top5_accuracy": top_k_accuracy(p, y, min(5, p.shape[1])),
        "nll": nll(p, y),
        "brier": brier(p, y),
    }
    for n_bins in TOP_LABEL_BINS:
        out[f"ece_{n_bins}"] = ece_top_label(p, y, n_bins)
    out["ece_mv"] = ece_median_variance(p, y) if len(y) >= MV_MIN_SIZE else math.nan
    out["entropy_mean"] = float(predictive_entropy(p).mean())
    out["confidence_mean"] = mean_confidence(p)
    out["overconfidence"] = out["confidence_mean"] - out["accuracy"]
    out.update(selective_metrics(p, y))
    if probs_ood is not None:
        out.update({f"ood_{k}": v for k, v in ood_scores(p, probs_ood).items()})
    return out
