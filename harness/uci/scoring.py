"""Scores of one split in the target's original units, and their mean ± standard error.

Per split (:func:`split_metrics`): RMSE, the test log-likelihood of the Gaussian predictive
(``ll``, per example, higher is better, the sign the published tables use) and its negative
``nll``, PICP at 1/2/3σ with the mean interval widths, and the CRPS, all from
:func:`harness.metrics.regression_metrics`. Over splits (:func:`aggregate`): the mean and the
standard error ``sd / √n`` (sample standard deviation, ``ddof = 1``), as the published tables.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from harness.metrics import regression_metrics

__all__ = ["METRICS", "aggregate", "aggregate_records", "split_metrics"]

METRICS = (
    "rmse",
    "ll",
    "nll",
    "crps",
    "picp_1",
    "picp_2",
    "picp_3",
    "width_1",
    "width_2",
    "width_3",
)
"""Metric keys of :func:`split_metrics`, in table order."""


def split_metrics(mean: np.ndarray, var: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Every metric of one split.

    Args:
        mean: Predictive means ``(M,)`` in the target's original units.
        var: Predictive variances ``(M,)`` (noise included), original units squared.
        targets: Test targets ``(M,)`` in original units.

    Returns:
        ``{"n", "rmse", "ll", "nll", "crps", "picp_1", ..., "width_3"}``.
    """
    out = regression_metrics(mean, var, targets)
    out["ll"] = -out["nll"]
    return out


def aggregate(values: Sequence[float]) -> dict[str, float]:
    """Mean and standard error of per-split values.

    Args:
        values: One value per split (at least one).

    Returns:
        ``{"mean", "se", "n"}``; ``se`` is NaN for a single split.

    Raises:
        ValueError: If ``values`` is empty.
    """
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise ValueError("aggregate needs at least one value")
    n = array.size
    se = float(array.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return {"mean": float(array.mean()), "se": se, "n": n}


def aggregate_records(
    records: Iterable[Mapping[str, object]], keys: Sequence[str] = METRICS
) -> dict[str, dict[str, float]]:
    """:func:`aggregate` of each metric over split records ``{"metrics": {...}, ...}``.

    Besides ``keys`` it aggregates ``train_seconds`` and the chosen ``noise_var`` (log10 mean).
    """
    records = list(records)
    out = {key: aggregate([r["metrics"][key] for r in records]) for key in keys}
    out["train_seconds"] = aggregate([r["train_seconds"] for r in records])
    out["log10_noise_var"] = aggregate([math.log10(r["noise_var"]) for r in records])
    return out
