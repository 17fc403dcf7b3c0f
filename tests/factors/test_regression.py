"""Gaussian regression likelihood (spec B.3.9)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from amp.factors import regression
from amp.gaussian import NatGaussian


@pytest.mark.parametrize("noise_var", [1e-4, 0.25, 30.0])
def test_message_is_the_likelihood_as_a_function_of_the_output(noise_var, dtype, tol, check):
    y = torch.tensor([[0.3, -2.0], [15.0, 0.0]], dtype=dtype)
    msg = regression.to_output(y, noise_var)
    assert msg.dtype == dtype
    assert msg.shape == y.shape
    # log N(y; f, β²) is quadratic in f: read off its natural parameters by differences
    yy = y.double().numpy()
    h = math.sqrt(noise_var)
    lp = stats.norm.logpdf(yy, h, h)
    l0 = stats.norm.logpdf(yy, 0.0, h)
    lm = stats.norm.logpdf(yy, -h, h)
    tau, rho = (lp - lm) / (2 * h), -(lp - 2 * l0 + lm) / h**2
    check(
        "regression message vs likelihood",
        [msg.tau, msg.rho],
        [tau, rho],
        max(tol.exact, 1e-9),
        [np.abs(tau).max(), 1 / noise_var],
    )
    check(
        "regression message moments",
        [msg.mean, msg.var],
        [yy, np.full_like(yy, noise_var)],
        tol.exact,
    )


def test_predict_adds_the_noise_variance(dtype, tol, check):
    out = NatGaussian.from_moments(
        torch.tensor([1.0, -3.0], dtype=dtype), torch.tensor([0.5, 2.0], dtype=dtype)
    )
    mean, var = regression.predict(out, 0.1)
    assert mean.dtype == var.dtype == dtype
    check("regression predict", [mean, var], [[1.0, -3.0], [0.6, 2.1]], tol.exact)


def test_predictive_variance_matches_sampling():
    """y = f + e with f ~ N(1, 0.5), e ~ N(0, 0.1): sample variance vs predict."""
    gen = torch.Generator().manual_seed(0)
    n = 400_000
    f = 1.0 + math.sqrt(0.5) * torch.randn(n, generator=gen, dtype=torch.float64)
    y = f + math.sqrt(0.1) * torch.randn(n, generator=gen, dtype=torch.float64)
    out = NatGaussian.from_moments(torch.tensor([1.0]), torch.tensor([0.5])).to(torch.float64)
    mean, var = regression.predict(out, 0.1)
    assert abs(mean.item() - y.mean().item()) <= 5 * math.sqrt(0.6 / n)
    assert abs(var.item() - y.var().item()) <= 5 * 0.6 * math.sqrt(2 / n)
