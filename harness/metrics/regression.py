"""Regression metrics of Gaussian predictives: RMSE, NLL, interval coverage and width, CRPS.

Functions take a predictive mean and variance of shape ``(N,)`` or ``(N, D)`` and targets of
the same shape.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from harness.metrics.checks import ArrayLike, check_regression, check_var

__all__ = [
    "crps_gaussian",
    "gaussian_nll",
    "mean_interval_width",
    "picp",
    "regression_metrics",
    "rmse",
]


def rmse(mean: ArrayLike, targets: ArrayLike) -> float:
    """Root mean squared error over all entries of ``(N,)`` or ``(N, D)`` arrays.

    Args:
        mean: Predictive mean ``(N,)`` or ``(N, D)``.
        targets: Targets of the same shape.

    Returns:
        The RMSE.
    """
    mu, _, y = check_regression(mean, None, targets)
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
    mu, v, y = check_regression(mean, var, targets)
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
    mu, v, y = check_regression(mean, var, targets)
    return float(np.mean(np.abs(y - mu) <= n_sigma * np.sqrt(v)))


def mean_interval_width(var: ArrayLike, n_sigma: float = 1.0) -> float:
    """Mean width ``2 * n_sigma * sigma`` of the central intervals (sharpness).

    Args:
        var: Predictive variance ``(N,)`` or ``(N, D)``, positive.
        n_sigma: Half-width of the interval in standard deviations.

    Returns:
        The mean width over all entries.
    """
    return float(np.mean(2.0 * n_sigma * np.sqrt(check_var(var))))


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
    mu, v, y = check_regression(mean, var, targets)
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
    mu, v, y = check_regression(mean, var, targets)
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
