"""Gaussian regression metrics against scipy (log-density, numerical CRPS, coverage)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from metric_cases import DTYPES, TOL
from scipy import integrate, stats

from harness import metrics as M


@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_nll_rmse_width(dtype):
    rng = np.random.default_rng(10)
    mean, var = rng.normal(size=(50, 3)), rng.uniform(0.1, 2.0, size=(50, 3))
    y = rng.normal(size=(50, 3))
    mean, var, y = mean.astype(dtype), var.astype(dtype), y.astype(dtype)
    m64, v64, y64 = (a.astype(np.float64) for a in (mean, var, y))
    logpdf = stats.norm.logpdf(y64, m64, np.sqrt(v64))
    tol = TOL[dtype]
    assert M.gaussian_nll(mean, var, y) == pytest.approx(-logpdf.sum(1).mean(), rel=tol)
    assert M.gaussian_nll(mean[:, 0], var[:, 0], y[:, 0]) == pytest.approx(-logpdf[:, 0].mean())
    assert M.rmse(mean, y) == pytest.approx(math.sqrt(np.mean((m64 - y64) ** 2)), rel=tol)
    assert M.mean_interval_width(var, 2) == pytest.approx(4 * np.sqrt(v64).mean(), rel=tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_crps_matches_numerical_integration(dtype):
    rng = np.random.default_rng(11)
    mean, sd = rng.normal(size=8), rng.uniform(0.2, 3.0, size=8)
    y = mean + sd * np.array([-4.0, -1.5, -0.3, 0.0, 0.1, 0.9, 2.2, 5.0])
    mean, sd, y = mean.astype(dtype), sd.astype(dtype), y.astype(dtype)
    for mu, s, t in zip(mean.astype(float), sd.astype(float), y.astype(float), strict=True):
        below, _ = integrate.quad(lambda x, mu=mu, s=s: stats.norm.cdf(x, mu, s) ** 2, -np.inf, t)
        above, _ = integrate.quad(lambda x, mu=mu, s=s: stats.norm.sf(x, mu, s) ** 2, t, np.inf)
        crps = M.crps_gaussian(np.array([mu]), np.array([s * s]), np.array([t]))
        assert crps == pytest.approx(below + above, rel=1e-7)
    per_entry = [
        M.crps_gaussian(mean[i : i + 1], sd[i : i + 1] ** 2, y[i : i + 1]) for i in range(8)
    ]
    assert M.crps_gaussian(mean, sd**2, y) == pytest.approx(np.mean(per_entry), rel=1e-12)


def test_picp_matches_gaussian_coverage():
    rng = np.random.default_rng(12)
    n = 200_000
    mean, var = rng.normal(size=n), rng.uniform(0.05, 4.0, size=n)
    y = mean + np.sqrt(var) * rng.standard_normal(n)  # targets drawn from the predictive itself
    for k in (1, 2, 3):
        nominal = stats.norm.cdf(k) - stats.norm.cdf(-k)  # 0.6827, 0.9545, 0.9973
        assert M.picp(mean, var, y, k) == pytest.approx(nominal, abs=5 * math.sqrt(nominal / n))
    # exactly representable edge |y - mu| = 2 sigma counts as inside
    assert M.picp(np.array([0.5, 0.5]), np.array([0.25, 0.25]), np.array([1.5, 1.75]), 2) == 0.5
    out = M.regression_metrics(mean[:100], var[:100], y[:100])
    assert set(out) == {
        "n",
        "rmse",
        "nll",
        "crps",
        *(f"{m}_{k}" for m in ("picp", "width") for k in (1, 2, 3)),
    }
    assert out["picp_2"] == M.picp(mean[:100], var[:100], y[:100], 2)
