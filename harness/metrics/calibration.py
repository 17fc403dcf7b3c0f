"""Calibration errors of classification predictives, in two conventions that are not comparable.

- :func:`ece_top_label`: equal-width bins on the top-label confidence (Guo et al. 2017; 15 bins
  as torchmetrics, 20 as the IVON papers).
- :func:`ece_median_variance`: the paper's estimator, CalibrationErrors.jl
  ``ECE(MedianVarianceBinning(20), SqEuclidean())`` on the full probability vector, with its
  binning :func:`median_variance_partition`.
"""

from __future__ import annotations

import numpy as np

from harness.metrics.checks import ArrayLike, check_classification, check_probs

__all__ = [
    "MV_MIN_SIZE",
    "TOP_LABEL_BINS",
    "ece_median_variance",
    "ece_top_label",
    "median_variance_partition",
]

MV_MIN_SIZE: int = 20
"""Minimum bin size of the paper's median-variance binning (``MedianVarianceBinning(20)``)."""

TOP_LABEL_BINS: tuple[int, ...] = (15, 20)
"""Equal-width bin counts reported: 15 (Guo et al. 2017, torchmetrics) and 20 (IVON papers)."""


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
    p, y = check_classification(probs, labels)
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
    p = check_probs(probs)
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
    p, y = check_classification(probs, labels)
    onehot = np.eye(p.shape[1])[y]
    total = 0.0
    for idx in median_variance_partition(p, min_size):
        diff = p[idx].mean(axis=0) - onehot[idx].mean(axis=0)
        total += len(idx) * float(diff @ diff)
    return total / len(y)
