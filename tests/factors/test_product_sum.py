"""Product-sum primitives (spec B.2) against Monte Carlo, Gaussian conditioning, quadrature."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from amp.factors.product_sum import product_moments, product_to_factor, sum_to_term
from amp.gaussian import NatGaussian

# (a_mean, a_var, b_mean, b_var): deterministic a, centred, large means, very unequal scales
PRODUCTS = [
    (1.5, 0.0, -0.7, 2.0),
    (0.0, 1.0, 0.0, 1.0),
    (2.0, 0.5, -3.0, 0.25),
    (-0.3, 4.0, 10.0, 1e-2),
    (1e-3, 1e-4, 50.0, 9.0),
]


def _t(values, dtype):
    return torch.tensor(values, dtype=dtype)


# ------------------------------------------------------------------------------------- P1
@pytest.mark.parametrize("index", range(len(PRODUCTS)))
def test_product_moments_match_monte_carlo(index, dtype):
    am, av, bm, bv = PRODUCTS[index]
    gen = torch.Generator().manual_seed(1000 + index)
    n = 400_000
    a = am + math.sqrt(av) * torch.randn(n, generator=gen, dtype=torch.float64)
    b = bm + math.sqrt(bv) * torch.randn(n, generator=gen, dtype=torch.float64)
    ab = a * b
    mc_mean, mc_var = ab.mean().item(), ab.var().item()
    mean_se = math.sqrt(mc_var / n)
    var_se = math.sqrt(((ab - mc_mean) ** 4).mean().item() / n)
    mean, var = product_moments(_t(am, dtype), _t(av, dtype), _t(bm, dtype), _t(bv, dtype))
    assert mean.dtype == var.dtype == dtype
    assert abs(mean.item() - mc_mean) <= 5 * mean_se
    assert abs(var.item() - mc_var) <= 5 * var_se


def test_product_moments_match_gauss_hermite(dtype, tol, check):
    """Gauss–Hermite with 8 nodes per axis integrates the polynomial moments exactly."""
    x, w = np.polynomial.hermite_e.hermegauss(8)
    w = w / w.sum()
    p = np.array(PRODUCTS)
    p = torch.tensor(p, dtype=dtype).double().numpy()  # the values the code sees
    got, ref, scale = [], [], []
    for am, av, bm, bv in p:
        a, b = am + math.sqrt(av) * x, bm + math.sqrt(bv) * x
        prod = a[:, None] * b[None, :]
        weights = w[:, None] * w[None, :]
        m1 = (weights * prod).sum()
        var = (weights * (prod - m1) ** 2).sum()
        mean, v = product_moments(*(_t(float(c), dtype) for c in (am, av, bm, bv)))
        got.append((mean.item(), v.item()))
        ref.append((m1, var))
        scale.append((math.sqrt(var), 0.0))
    check("product_moments vs Gauss-Hermite", got, ref, tol.exact, scale)


# ------------------------------------------------------------------------------------- P2
def _conditioning_messages(term_mean, term_var, y, noise_var):
    """Messages to every term of ``s = Σ t_k`` given ``N(y; s, noise_var)``, by linear algebra.

    Joint prior N(m, diag(v)) of the terms, observation ``y = 1ᵀ t + e``; the exact posterior
    marginal of each term divided by its prior gives the message (natural parameters) and the
    posterior's natural parameters give the error scale.
    """
    m, v = np.asarray(term_mean, float), np.asarray(term_var, float)
    ones = np.ones_like(m)
    cov = np.diag(v)
    gain = cov @ ones / (ones @ cov @ ones + noise_var)
    post_mean = m + gain * (y - ones @ m)
    post_cov = cov - np.outer(gain, ones @ cov)
    post_var = np.diag(post_cov)
    tau = np.where(v > 0, post_mean / post_var - m / np.where(v > 0, v, 1), np.nan)
    rho = np.where(v > 0, 1 / post_var - 1 / np.where(v > 0, v, 1), np.nan)
    scale = (np.abs(post_mean / post_var) + np.sqrt(1 / post_var), 1 / post_var)
    return tau, rho, scale


CONDITIONING = [  # term means, term variances, observation y, noise variance
    ([0.5, -1.0, 2.0], [1.0, 0.5, 2.0], 0.7, 0.3),
    ([0.0, 0.0], [1.0, 1.0], 3.0, 1e-6),  # nearly exact observation
    ([10.0, -5.0, 1.0, 0.1], [0.01, 4.0, 1e-4, 9.0], -2.0, 50.0),
    ([1.0, 2.0, 3.0], [1e3, 1e-3, 1.0], 100.0, 1.0),
]


@pytest.mark.parametrize("index", range(len(CONDITIONING)))
def test_sum_to_term_is_gaussian_conditioning(index, dtype, tol, check):
    means, variances, y, noise = CONDITIONING[index]
    m = _t(means, dtype)
    v = _t(variances, dtype)
    m_back = NatGaussian(_t([y / noise], dtype), _t([1 / noise], dtype))
    out = sum_to_term(m, v, m.sum(), v.sum(), m_back)
    assert out.dtype == dtype
    mm, vv = m.double().numpy(), v.double().numpy()
    yy = (m_back.tau.double() / m_back.rho.double()).item()
    tau, rho, scale = _conditioning_messages(mm, vv, yy, 1 / m_back.rho.double().item())
    check("sum_to_term vs conditioning", [out.tau, out.rho], [tau, rho], tol.exact, scale)


def test_sum_to_term_with_a_deterministic_term_is_the_message_through_the_sum(dtype, tol, check):
    """A zero-variance term: the message is N(y − rest mean, noise + rest variance)."""
    rest_means, rest_vars, y, noise = np.array([0.3, -1.2]), np.array([0.4, 2.5]), 1.1, 0.2
    m_back = NatGaussian(_t([y / noise], dtype), _t([1 / noise], dtype))
    out = sum_to_term(
        _t(0.8, dtype),
        _t(0.0, dtype),
        _t(0.8 + rest_means.sum(), dtype),
        _t(rest_vars.sum(), dtype),
        m_back,
    )
    var = noise + rest_vars.sum()
    mean = y - rest_means.sum()
    check(
        "sum_to_term deterministic term", [out.tau, out.rho], [[mean / var], [1 / var]], tol.exact
    )


def test_uniform_message_at_the_sum_gives_uniform_term_messages(dtype):
    m, v = _t([0.5, -1.0, 2.0], dtype), _t([1.0, 0.5, 2.0], dtype)
    out = sum_to_term(m, v, m.sum(), v.sum(), NatGaussian.uniform((1,), dtype=dtype))
    assert torch.equal(out.tau, torch.zeros(3, dtype=dtype))
    assert torch.equal(out.rho, torch.zeros(3, dtype=dtype))


_finite = st.floats(-1e6, 1e6)
_var = st.floats(1e-12, 1e12)


@settings(max_examples=200, deadline=None)
@given(_finite, _var, _finite, st.floats(0.0, 1e12), _finite, st.floats(0.0, 1e12))
def test_fuzz_sum_to_term_is_finite_and_proper(term_mean, term_var, rest_mean, rest_var, y, rho_b):
    m_back = NatGaussian(torch.tensor([y * rho_b]), torch.tensor([rho_b])).to(torch.float64)
    out = sum_to_term(
        torch.tensor([term_mean], dtype=torch.float64),
        torch.tensor([term_var], dtype=torch.float64),
        torch.tensor([term_mean + rest_mean], dtype=torch.float64),
        torch.tensor([term_var + rest_var], dtype=torch.float64),
        m_back,
    )
    assert out.is_finite()
    assert out.rho.item() >= 0


# ------------------------------------------------------------------------- product messages
def _quadratic_coefficients(log_density, scale):
    """``(tau, rho)`` of ``b ↦ log_density(b)`` (a quadratic) by central differences at 0."""
    lp, l0, lm = log_density(scale), log_density(0.0), log_density(-scale)
    return (lp - lm) / (2 * scale), -(lp - 2 * l0 + lm) / scale**2


VMP = [  # a_mean, a_var, message on t = a b as (mean, var)
    (1.5, 0.4, 0.7, 0.3),
    (-2.0, 1.0, -1.0, 2.0),
    (0.1, 3.0, 4.0, 0.5),
    (0.0, 0.5, 1.0, 1.0),  # E[a] = 0: no information on the sign of b
]


@pytest.mark.parametrize("index", range(len(VMP)))
def test_product_to_factor_is_the_vmp_message(index, dtype, tol, check):
    """exp(E_a[log N(a b; μ_t, σ_t²)]) as a function of b, integrated over a with quad."""
    am, av, mt, vt = (float(c) for c in _t(VMP[index], dtype).double())

    def expected_log(b):
        def integrand(a):
            return stats.norm.pdf(a, am, math.sqrt(av)) * stats.norm.logpdf(
                a * b, mt, math.sqrt(vt)
            )

        val, _ = integrate.quad(
            integrand,
            am - 40 * math.sqrt(av),
            am + 40 * math.sqrt(av),
            epsabs=0,
            epsrel=1e-13,
            limit=200,
        )
        return val

    m2 = av + am * am
    tau, rho = _quadratic_coefficients(expected_log, 1.0 / math.sqrt(m2 / vt))
    m_term = NatGaussian.from_moments(_t([mt], dtype), _t([vt], dtype))
    out = product_to_factor(m_term, _t(am, dtype), _t(m2, dtype))
    got, ref = [out.tau, out.rho], [[tau], [rho]]
    check("product_to_factor vs VMP quadrature", got, ref, tol.quad, (math.sqrt(rho), 0.0))


@pytest.mark.parametrize("a", [2.5, -0.4])
def test_product_to_factor_with_a_constant_is_exact(a, dtype, tol, check):
    mt, vt = 0.6, 0.8
    tau, rho = _quadratic_coefficients(lambda b: stats.norm.logpdf(a * b, mt, math.sqrt(vt)), 1.0)
    m_term = NatGaussian.from_moments(_t([mt], dtype), _t([vt], dtype))
    out = product_to_factor(m_term, _t(a, dtype), _t(a * a, dtype))
    check("product_to_factor constant", [out.tau, out.rho], [[tau], [rho]], max(tol.exact, 1e-9))
