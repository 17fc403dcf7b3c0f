"""Evaluation metrics shared by every method, computed in float64 from predictive distributions.

Classification metrics take predictive probabilities ``probs`` of shape ``(N, K)`` (for a
Bayesian model: the Bayesian model average of the per-sample probabilities, never an average of
per-sample metrics) and integer labels ``(N,)`` in ``0 .. K-1``. Regression metrics take a
Gaussian predictive mean and variance of shape ``(N,)`` or ``(N, D)`` and targets of the same
shape. Every function accepts numpy arrays or torch tensors (any device) and returns Python
floats. Invalid input raises a ``ValueError`` that names the argument, the problem and the fix.

Two ECE conventions are reported side by side, because their values are not comparable:
:func:`ece_top_label` (equal-width bins on the top-label confidence, Guo et al. 2017) and
:func:`ece_median_variance` (the paper's estimator, CalibrationErrors.jl
``ECE(MedianVarianceBinning(20), SqEuclidean())`` on the full probability vector).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import special, stats

__all__ = [
    "MV_MIN_SIZE",
    "NLL_FLOOR",
    "PROB_SUM_TOL",
    "accuracy",
    "auroc",
    "average_precision",
    "brier",
    "classification_metrics",
    "crps_gaussian",
    "ece_median_variance",
    "ece_top_label",
    "fpr_at_tpr",
    "gaussian_nll",
    "mean_interval_width",
    "median_variance_partition",
    "nll",
    "ood_scores",
    "picp",
    "predictive_entropy",
    "regression_metrics",
    "rmse",
    "top_k_accuracy",
]

NLL_FLOOR: float = float(np.finfo(np.float64).eps)
"""Lower clamp on the label probability in :func:`nll`: float64 machine epsilon, 2.22e-16.

The reference evaluation (``get_eval_stats`` in the authors' Julia code) computes
``-log(max(p_label, eps(Float64)))``; an overconfident wrong prediction therefore costs at most
``-log(2.22e-16) = 36.04`` nats instead of infinity.
"""

PROB_SUM_TOL: float = 1e-3
"""Largest accepted ``|sum_k p_nk - 1|``; float32 softmax outputs are well within it."""

MV_MIN_SIZE: int = 20
"""Minimum bin size of the paper's median-variance binning (``MedianVarianceBinning(20)``)."""

TOP_LABEL_BINS: tuple[int, ...] = (15, 20)
"""Equal-width bin counts reported: 15 (Guo et al. 2017, torchmetrics) and 20 (IVON papers)."""

FPR_TPR_LEVEL: float = 0.95
"""True-positive rate at which the false-positive rate ``ood_fpr95`` is read off."""

ArrayLike = Any
"""A numpy array, a torch tensor or anything ``numpy.asarray`` accepts."""


# --------------------------------------------------------------------------- input checks


def _as_numpy(x: ArrayLike, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor; avoids importing torch here
        x = x.detach().cpu()
        x = (x.double() if x.is_floating_point() else x).numpy()
    arr = np.asarray(x)
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); pass at least one example")
    return arr


def _as_float(x: ArrayLike, name: str, ndims: tuple[int, ...]) -> np.ndarray:
    arr = _as_numpy(x, name)
    if arr.ndim not in ndims:
        raise ValueError(
            f"{name} must have {' or '.join(map(str, ndims))} dimensions, got shape "
            f"{arr.shape}; reshape it"
        )
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        bad = int(np.sum(~np.isfinite(arr)))
        raise ValueError(
            f"{name} contains {bad} NaN or infinite values; fix the model output "
            "(e.g. diverged training) before evaluating"
        )
    return arr


def _check_probs(probs: ArrayLike, name: str = "probs") -> np.ndarray:
    p = _as_float(probs, name, (2,))
    if p.shape[1] < 2:
        raise ValueError(f"{name} must have at least 2 classes (columns), got shape {p.shape}")
    if np.any(p < 0):
        raise ValueError(
            f"{name} has negative entries (min {p.min():.3g}); pass probabilities, "
            "not logits (apply softmax first)"
        )
    err = np.abs(p.sum(axis=1) - 1.0)
    if np.any(err > PROB_SUM_TOL):
        raise ValueError(
            f"rows of {name} must sum to 1 (worst |sum - 1| = {err.max():.3g} > "
            f"{PROB_SUM_TOL}); apply softmax to logits or divide each row by its sum"
        )
    return p


def _check_classification(probs: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p = _check_probs(probs)
    y = _as_numpy(labels, "labels")
    if y.ndim != 1 or y.shape[0] != p.shape[0]:
        raise ValueError(
            f"labels must have shape ({p.shape[0]},) to match probs {p.shape}, got "
            f"{y.shape}; pass one integer class index per example"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"labels must be integers, got dtype {y.dtype}; convert class indices "
            "with .astype(np.int64) or .long()"
        )
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(
            f"labels must lie in 0..{p.shape[1] - 1}, got range {y.min()}..{y.max()}"
            "; use 0-based class indices matching the columns of probs"
        )
    return p, y.astype(np.int64)


def _check_regression(
    mean: ArrayLike, var: ArrayLike | None, targets: ArrayLike
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    mu = _as_float(mean, "mean", (1, 2))
    y = _as_float(targets, "targets", (1, 2))
    if y.shape != mu.shape:
        raise ValueError(
            f"targets shape {y.shape} differs from mean shape {mu.shape}; both must "
            "be (N,) or (N, D)"
        )
    if var is None:
        return mu, None, y
    v = _check_var(var)
    if v.shape != mu.shape:
        raise ValueError(f"var shape {v.shape} differs from mean shape {mu.shape}")
    return mu, v, y


def _check_var(var: ArrayLike) -> np.ndarray:
    v = _as_float(var, "var", (1, 2))
    if np.any(v <= 0):
        raise ValueError(
            f"var must be positive, found {int(np.sum(v <= 0))} entries <= 0 "
            f"(min {v.min():.3g}); pass variances, not log-variances, and add "
            "observation noise if the model is degenerate"
        )
    return v


def _check_scores(scores: ArrayLike, name: str) -> np.ndarray:
    return _as_float(scores, name, (1,))


# --------------------------------------------------------------------------- classification


def accuracy(probs: ArrayLike, labels: ArrayLike) -> float:
    """Top-1 accuracy; ties in ``probs`` go to the first maximal class (``numpy.argmax``).

    Args:
        probs: Predictive probabilities ``(N, K)``.
        labels: Class indices ``(N,)``.

    Returns:
        The fraction of examples whose arg-max class is the label.
    """
    p, y = _check_classification(probs, labels)
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
    p, y = _check_classification(probs, labels)
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
    p, y = _check_classification(probs, labels)
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
    p, y = _check_classification(probs, labels)
    onehot = np.eye(p.shape[1])[y]
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def ece_top_label(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15) -> float:
    """Top-label expected calibration error with equal-width bins and the L1 norm.

    Confidence ``c_n = max_k p_nk``, correctness ``a_n = 1[argmax_k p_nk = y_n]``. Bin ``b``
    (``0 <= b < n_bins``) is the interval ``(b/n_bins, (b+1)/n_bins]``, except that the first bin
    also takes ``c = 0`` and a confidence of exactly 1.0 falls in the last bin.
    ``ECE = sum_b (n_b / N) |mean_b(a) - mean_b(c)|``; empty bins contribute nothing.

    Difference from torchmetrics 1.9 (``MulticlassCalibrationError(norm="l1")``): torchmetrics
    uses left-closed bins ``[b/n, (b+1)/n)`` (``torch.bucketize(right=True)``), so a confidence
    of exactly 1.0 lands in an extra ``(n_bins+1)``-th bin of its own; it also casts confidences
    to float32. Away from bin edges the two agree; for confidences equal to 1.0 (common with
    float32 softmax) they differ whenever the last bin holds other examples as well.

    Args:
        probs: Predictive probabilities ``(N, K)``.
        labels: Class indices ``(N,)``.
        n_bins: Number of equal-width bins on ``[0, 1]``.

    Returns:
        The ECE as a fraction (not in percent).
    """
    p, y = _check_classification(probs, labels)
    if n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins}")
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    gap = np.bincount(idx, weights=correct - conf, minlength=n_bins)
    return float(np.sum(np.abs(gap)) / len(y))


def median_variance_partition(probs: ArrayLike, min_size: int = MV_MIN_SIZE) -> list[np.ndarray]:
    """Median-variance binning of probability vectors, as CalibrationErrors.jl v0.6.4.

    Follows ``MedianVarianceBinning(min_size)`` (no maximum number of bins) in
    ``src/binning/medianvariance.jl``:

    1. Start with one bin holding all ``N`` examples. A bin with fewer than ``2 * min_size``
       examples is final.
    2. Otherwise pick the coordinate ``d`` with the largest unbiased sample variance of
       ``p[:, d]`` within the bin (exact ties: the smallest ``d``). Let ``m`` be the value of rank
       ``n // 2`` (0-based) among the bin's ``n`` values of coordinate ``d``, i.e. the upper
       median. The bin splits into ``{p_d < m}`` and ``{p_d >= m}``: every example equal to the
       median goes to the upper half, so ties at the median are never separated.
    3. If either half has fewer than ``min_size`` examples (possible only through ties at the
       median), the bin is final and unsplit. Otherwise each half is handled by step 1-2 again.

    CalibrationErrors.jl processes bins in order of decreasing variance through a priority
    queue; since the number of bins is unbounded, every bin is split as long as the rule allows,
    and the final partition does not depend on the order (here: depth first). Variances are
    computed two-pass in float64 rather than with Welford's update, so coordinates whose
    variances agree to rounding error may be chosen differently than in Julia.

    Args:
        probs: Predictive probabilities ``(N, K)``.
        min_size: Minimum number of examples per bin.

    Returns:
        The bins as sorted index arrays; together they partition ``0 .. N-1``.

    Raises:
        ValueError: On invalid inputs, ``min_size < 1`` or ``N < min_size`` (as the reference).
    """
    p = _check_probs(probs)
    if min_size < 1:
        raise ValueError(f"min_size must be a positive integer, got {min_size}")
    if p.shape[0] < min_size:
        raise ValueError(
            f"median-variance binning needs at least min_size={min_size} examples, "
            f"got {p.shape[0]}; evaluate on more examples or lower min_size"
        )
    bins: list[np.ndarray] = []
    stack = [np.arange(p.shape[0])]
    while stack:
        idx = stack.pop()
        if len(idx) < 2 * min_size:
            bins.append(idx)
            continue
        dim = int(np.argmax(np.var(p[idx], axis=0, ddof=1)))
        values = p[idx, dim]
        median = np.partition(values, len(idx) // 2)[len(idx) // 2]
        below, above = idx[values < median], idx[values >= median]
        if len(below) < min_size or len(above) < min_size:
            bins.append(idx)
        else:
            stack += [above, below]
    return [np.sort(b) for b in bins]


def ece_median_variance(probs: ArrayLike, labels: ArrayLike, min_size: int = MV_MIN_SIZE) -> float:
    """The paper's ECE: ``ECE(MedianVarianceBinning(min_size), SqEuclidean())``.

    With the bins of :func:`median_variance_partition`,
    ``ECE = sum_bins (n_bin / N) * || mean_bin(p) - mean_bin(onehot(y)) ||_2^2``, the squared
    Euclidean distance between the mean probability vector and the label frequencies, over all
    ``K`` classes (canonical, not top-label). CalibrationErrors.jl forms the same bin-size
    weighted mean incrementally (West's algorithm). When ``N < 2 * min_size`` there is one bin.

    Args:
        probs: Predictive probabilities ``(N, K)``.
        labels: Class indices ``(N,)``.
        min_size: Minimum number of examples per bin (paper: 20).

    Returns:
        The ECE; not comparable with :func:`ece_top_label`.
    """
    p, y = _check_classification(probs, labels)
    onehot = np.eye(p.shape[1])[y]
    total = 0.0
    for idx in median_variance_partition(p, min_size):
        diff = p[idx].mean(axis=0) - onehot[idx].mean(axis=0)
        total += len(idx) * float(diff @ diff)
    return total / len(y)


# --------------------------------------------------------------------------- OOD detection


def predictive_entropy(probs: ArrayLike) -> np.ndarray:
    """Entropy ``-sum_k p_k log p_k`` in nats of each predictive distribution (``0 log 0 = 0``).

    Args:
        probs: Predictive probabilities ``(N, K)``.

    Returns:
        Entropies ``(N,)``, float64.
    """
    return special.entr(_check_probs(probs)).sum(axis=1)


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
    neg, pos = _check_scores(scores_neg, "scores_neg"), _check_scores(scores_pos, "scores_pos")
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
    neg, pos = _check_scores(scores_neg, "scores_neg"), _check_scores(scores_pos, "scores_pos")
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
    neg, pos = _check_scores(scores_neg, "scores_neg"), _check_scores(scores_pos, "scores_pos")
    if not 0.0 < tpr <= 1.0:
        raise ValueError(f"tpr must be in (0, 1], got {tpr}")
    j = max(1, math.ceil(round(tpr * len(pos), 9)))  # round away float noise such as 0.95 * M
    threshold = np.sort(pos)[::-1][j - 1]
    return float(np.mean(neg >= threshold))


def ood_scores(probs_in: ArrayLike, probs_out: ArrayLike) -> dict[str, float]:
    """Out-of-distribution detection by predictive entropy; OOD examples are the positives.

    Args:
        probs_in: Predictive probabilities on in-distribution data ``(N, K)``.
        probs_out: Predictive probabilities on OOD data ``(M, K)``.

    Returns:
        ``{"auroc", "aupr", "fpr95"}``: :func:`auroc`, :func:`average_precision` and
        :func:`fpr_at_tpr` at 95% TPR, each with the entropy as score.
    """
    p_in, p_out = _check_probs(probs_in, "probs_in"), _check_probs(probs_out, "probs_out")
    if p_in.shape[1] != p_out.shape[1]:
        raise ValueError(
            f"probs_in has {p_in.shape[1]} classes but probs_out has "
            f"{p_out.shape[1]}; both must come from the same model head"
        )
    h_in, h_out = predictive_entropy(p_in), predictive_entropy(p_out)
    return {
        "auroc": auroc(h_in, h_out),
        "aupr": average_precision(h_in, h_out),
        "fpr95": fpr_at_tpr(h_in, h_out, FPR_TPR_LEVEL),
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
        ``entropy_mean``: mean predictive entropy (nats). With ``probs_ood`` also
        ``ood_auroc``, ``ood_aupr``, ``ood_fpr95`` from :func:`ood_scores`.

    Args:
        probs: Predictive probabilities ``(N, K)``.
        labels: Class indices ``(N,)``.
        probs_ood: Optional predictive probabilities on OOD data ``(M, K)``.

    Returns:
        A dict from metric name to value.
    """
    p, y = _check_classification(probs, labels)
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
    if probs_ood is not None:
        out.update({f"ood_{k}": v for k, v in ood_scores(p, probs_ood).items()})
    return out


# --------------------------------------------------------------------------- regression


def rmse(mean: ArrayLike, targets: ArrayLike) -> float:
    """Root mean squared error over all entries of ``(N,)`` or ``(N, D)`` arrays.

    Args:
        mean: Predictive mean ``(N,)`` or ``(N, D)``.
        targets: Targets of the same shape.

    Returns:
        The RMSE.
    """
    mu, _, y = _check_regression(mean, None, targets)
    return float(np.sqrt(np.mean((y - mu) ** 2)))


def gaussian_nll(mean: ArrayLike, var: ArrayLike, targets: ArrayLike) -> float:
    """Mean over examples of ``-log N(y; mu, var)`` (summed over the ``D`` outputs, if any).

    Args:
        mean: Predictive mean ``(N,)`` or ``(N, D)``.
        var: Predictive variance, same shape, positive.
        targets: Targets, same shape.

    Returns:
        The NLL in nats per example.
    """
    mu, v, y = _check_regression(mean, var, targets)
    terms = 0.5 * (np.log(2.0 * np.pi * v) + (y - mu) ** 2 / v)
    return float(np.mean(terms.reshape(len(terms), -1).sum(axis=1)))


def picp(mean: ArrayLike, var: ArrayLike, targets: ArrayLike, n_sigma: float = 1.0) -> float:
    """Prediction-interval coverage: fraction of entries with ``|y - mu| <= n_sigma * sigma``.

    A calibrated Gaussian gives 0.6827, 0.9545 and 0.9973 for ``n_sigma`` = 1, 2, 3.

    Args:
        mean: Predictive mean ``(N,)`` or ``(N, D)``.
        var: Predictive variance, same shape, positive.
        targets: Targets, same shape.
        n_sigma: Half-width of the interval in standard deviations.

    Returns:
        The coverage over all ``N * D`` entries.
    """
    mu, v, y = _check_regression(mean, var, targets)
    return float(np.mean(np.abs(y - mu) <= n_sigma * np.sqrt(v)))


def mean_interval_width(var: ArrayLike, n_sigma: float = 1.0) -> float:
    """Mean width ``2 * n_sigma * sigma`` of the central intervals (sharpness).

    Args:
        var: Predictive variance ``(N,)`` or ``(N, D)``, positive.
        n_sigma: Half-width of the interval in standard deviations.

    Returns:
        The mean width over all entries.
    """
    return float(np.mean(2.0 * n_sigma * np.sqrt(_check_var(var))))


def crps_gaussian(mean: ArrayLike, var: ArrayLike, targets: ArrayLike) -> float:
    """Mean continuous ranked probability score of Gaussian predictives, in closed form.

    ``CRPS(N(mu, s^2), y) = s [z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)]`` with
    ``z = (y - mu) / s`` (Gneiting et al. 2005; ``properscoring.crps_gaussian``).

    Args:
        mean: Predictive mean ``(N,)`` or ``(N, D)``.
        var: Predictive variance, same shape, positive.
        targets: Targets, same shape.

    Returns:
        The CRPS averaged over all entries (units of the targets; lower is better).
    """
    mu, v, y = _check_regression(mean, var, targets)
    s = np.sqrt(v)
    z = (y - mu) / s
    crps = s * (z * (2.0 * stats.norm.cdf(z) - 1.0) + 2.0 * stats.norm.pdf(z) - 1 / np.sqrt(np.pi))
    return float(np.mean(crps))


def regression_metrics(mean: ArrayLike, var: ArrayLike, targets: ArrayLike) -> dict[str, float]:
    """Every regression metric of the benchmark, under stable key names.

    Keys:
        ``n``: number of examples. ``rmse``: :func:`rmse`. ``nll``: :func:`gaussian_nll`.
        ``crps``: :func:`crps_gaussian`. ``picp_1`` / ``picp_2`` / ``picp_3``: :func:`picp`
        at 1, 2, 3 sigma. ``width_1`` / ``width_2`` / ``width_3``: :func:`mean_interval_width`.

    Args:
        mean: Predictive mean ``(N,)`` or ``(N, D)``.
        var: Predictive variance, same shape, positive.
        targets: Targets, same shape.

    Returns:
        A dict from metric name to value.
    """
    mu, v, y = _check_regression(mean, var, targets)
    out = {
        "n": float(len(y)),
        "rmse": rmse(mu, y),
        "nll": gaussian_nll(mu, v, y),
        "crps": crps_gaussian(mu, v, y),
    }
    for k in (1, 2, 3):
        out[f"picp_{k}"] = picp(mu, v, y, k)
        out[f"width_{k}"] = mean_interval_width(v, k)
    return out
