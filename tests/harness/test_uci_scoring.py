"""UCI scores: log-likelihood and RMSE against direct formulas; mean ± standard error."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from harness.uci.scoring import METRICS, aggregate, aggregate_records, split_metrics


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_log_likelihood_and_rmse_match_direct_formulas(dtype):
    rng = np.random.default_rng(0)
    y = rng.normal(20.0, 5.0, 400)
    mean = (y + rng.normal(0.0, 2.0, 400)).astype(dtype)
    var = rng.uniform(1.0, 9.0, 400).astype(dtype)
    scores = split_metrics(mean, var, y.astype(dtype))
    tol = 1e-12 if dtype == np.float64 else 1e-6
    m, v = mean.astype(np.float64), var.astype(np.float64)
    expected_ll = np.mean(
        [stats.norm.logpdf(t, mu, math.sqrt(s)) for t, mu, s in zip(y, m, v, strict=True)]
    )
    loop_rmse = math.sqrt(sum((t - mu) ** 2 for t, mu in zip(y, m, strict=True)) / len(y))
    assert scores["ll"] == pytest.approx(expected_ll, rel=tol)
    assert scores["nll"] == pytest.approx(-expected_ll, rel=tol)
    assert scores["rmse"] == pytest.approx(loop_rmse, rel=tol)
    inside = np.abs(y - m) <= 2 * np.sqrt(v)
    assert scores["picp_2"] == pytest.approx(inside.mean())
    crps = np.mean(
        [
            _crps_by_quadrature(t, mu, math.sqrt(s))
            for t, mu, s in zip(y[:20], m[:20], v[:20], strict=True)
        ]
    )
    assert split_metrics(m[:20], v[:20], y[:20])["crps"] == pytest.approx(crps, rel=1e-6)
    assert set(METRICS) <= set(scores)


def _crps_by_quadrature(y: float, mu: float, sigma: float) -> float:
    """∫ (F(z) − 1[z ≥ y])² dz for a Gaussian F: ∫ F² below y plus ∫ (1 − F)² above."""
    below = integrate.quad(lambda z: stats.norm.cdf(z, mu, sigma) ** 2, -np.inf, y)[0]
    above = integrate.quad(lambda z: stats.norm.sf(z, mu, sigma) ** 2, y, np.inf)[0]
    return below + above


def test_a_calibrated_gaussian_covers_its_nominal_mass():
    rng = np.random.default_rng(1)
    n = 200_000
    mean, var = rng.normal(size=n), rng.uniform(0.5, 2.0, n)
    y = mean + np.sqrt(var) * rng.normal(size=n)
    scores = split_metrics(mean, var, y)
    for k in (1, 2, 3):
        assert scores[f"picp_{k}"] == pytest.approx(stats.chi2.cdf(k**2, 1), abs=4e-3)


def test_aggregate_is_the_mean_and_the_standard_error():
    values = [2.5, 3.0, 3.5, 2.0, 4.25]
    out = aggregate(values)
    assert out["mean"] == pytest.approx(np.mean(values))
    assert out["se"] == pytest.approx(stats.sem(values))  # sample SD (ddof 1) / sqrt(n)
    assert out["se"] == pytest.approx(np.std(values, ddof=1) / math.sqrt(5))
    assert out["n"] == 5
    single = aggregate([1.5])
    assert single["mean"] == 1.5
    assert math.isnan(single["se"])
    with pytest.raises(ValueError, match="at least one"):
        aggregate([])


def test_aggregate_records_covers_every_metric_time_and_noise():
    rng = np.random.default_rng(2)
    records = []
    for k in range(4):
        y = rng.normal(size=30)
        metrics = split_metrics(y + 0.1 * rng.normal(size=30), np.full(30, 0.04), y)
        records.append({"metrics": metrics, "train_seconds": 1.0 + k, "noise_var": 10.0**-k})
    out = aggregate_records(records)
    assert out["rmse"]["mean"] == pytest.approx(np.mean([r["metrics"]["rmse"] for r in records]))
    assert out["train_seconds"]["mean"] == pytest.approx(2.5)
    assert out["log10_noise_var"]["mean"] == pytest.approx(-1.5)
    assert out["ll"]["se"] == pytest.approx(stats.sem([r["metrics"]["ll"] for r in records]))
