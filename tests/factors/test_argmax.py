"""Argmax classification factor (spec B.3.8).

``predict`` is the normalised product of pairwise probits, *not* the probability that a logit is
the largest; it is checked against that formula written out, against the exact two-class
probability (where the two coincide) and against the spec's vector. ``truncate_positive`` is
checked against ``scipy.stats.truncnorm`` and an arbitrary-precision evaluation (mpmath), and
``to_logits`` against the spec's vectors and an implementation in moment form built on truncnorm.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from amp.factors import argmax
from amp.gaussian import NatGaussian

SPEC_MEAN, SPEC_VAR = [0.5, -0.2, 1.0], [1.0, 0.5, 2.0]


def _t(values, dtype):
    return torch.tensor(values, dtype=dtype)


def _random_logits(seed: int, n: int, k: int, spread: float = 3.0):
    rng = np.random.default_rng(seed)
    return spread * rng.normal(size=(n, k)), 10.0 ** rng.uniform(-3, 1, size=(n, k))


# ------------------------------------------------------------------------------------ predict
def test_predict_spec_vector(dtype, tol, check):
    p = argmax.predict(_t([SPEC_MEAN], dtype), _t([SPEC_VAR], dtype))
    assert p.dtype == dtype
    check("argmax spec predict", p, [[0.33819539, 0.08798109, 0.57382352]], tol.spec)


@pytest.mark.parametrize("k", [1, 2, 3, 5, 10])
def test_predict_is_the_normalised_product_of_probits(k, dtype, tol, check, refs):
    mean, var = _random_logits(k, 40, k)
    m, v = _t(mean, dtype), _t(var, dtype)
    got = argmax.predict(m, v)
    mm, vv = m.double().numpy(), v.double().numpy()
    literal = np.ones_like(mm)  # Π_{i≠j} Φ(·), straight from the formula
    for j in range(k):
        for i in range(k):
            if i != j:
                literal[:, j] *= stats.norm.cdf(
                    (mm[:, j] - mm[:, i]) / np.sqrt(vv[:, i] + vv[:, j] + argmax.NOISE_VAR)
                )
    literal /= literal.sum(-1, keepdims=True)
    check("argmax predict vs probit product", got, literal, tol.exact, 1e-3)
    check(
        "argmax predict vs log-space loops",
        got,
        refs.pairwise_probit_probs(mm, vv, 0.3),
        tol.exact,
        1e-3,
    )


def test_predict_survives_underflow_of_the_product(refs):
    mean = torch.tensor([[0.0, -60.0, -70.0, 80.0]], dtype=torch.float64)
    var = torch.full_like(mean, 1e-3)
    got = argmax.predict(mean, var).numpy()
    assert np.isfinite(got).all()
    np.testing.assert_allclose(
        got, refs.pairwise_probit_probs(mean.numpy(), var.numpy(), 0.3), rtol=1e-12
    )


def test_two_classes_give_the_exact_comparison_probability(dtype, tol, check):
    mean, var = _random_logits(7, 50, 2)
    m, v = _t(mean, dtype).double().numpy(), _t(var, dtype).double().numpy()
    exact = stats.norm.cdf((m[:, 0] - m[:, 1]) / np.sqrt(v[:, 0] + v[:, 1] + argmax.NOISE_VAR))
    got = argmax.predict(_t(mean, dtype), _t(var, dtype))
    check("argmax K=2 vs exact probability", got[:, 0], exact, tol.exact, 1e-3)


def test_two_classes_match_monte_carlo():
    mean, var = np.array([0.4, -0.3]), np.array([0.8, 1.5])
    gen = torch.Generator().manual_seed(3)
    n = 400_000
    x = torch.tensor(mean) + torch.tensor(var).sqrt() * torch.randn(
        n, 2, generator=gen, dtype=torch.float64
    )
    noise = math.sqrt(argmax.NOISE_VAR) * torch.randn(n, generator=gen, dtype=torch.float64)
    freq = (x[:, 0] - x[:, 1] + noise > 0).double().mean().item()
    p = argmax.predict(torch.tensor(mean[None]), torch.tensor(var[None]))[0, 0].item()
    assert abs(p - freq) <= 5 * math.sqrt(freq * (1 - freq) / n)


# -------------------------------------------------------------------------- truncate_positive
@pytest.mark.parametrize("t", [-10.0, -5.0, -1.0, 0.0, 0.5, 3.0, 10.0, 30.0])
@pytest.mark.parametrize("sd", [0.01, 1.0, 50.0])
def test_truncate_positive_matches_truncnorm(t, sd, dtype, tol, check):
    m = NatGaussian.from_moments(_t([t * sd], dtype), _t([sd * sd], dtype))
    mu, s = m.mean.double().item(), m.var.double().sqrt().item()
    ref = stats.truncnorm(-mu / s, np.inf, loc=mu, scale=s)
    out = argmax.truncate_positive(m)
    rtol = 1e-9 if dtype == torch.float64 else tol.exact
    check(
        "truncate_positive vs truncnorm",
        [out.mean, out.var],
        [[ref.mean()], [ref.var()]],
        rtol,
        [math.sqrt(ref.var()), 0],
    )


def _exact_truncated(t: float) -> tuple[float, float]:
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workdps(60):
        x = mpmath.mpf(t)
        v = mpmath.npdf(x) / mpmath.ncdf(x)
        return float(x + v), float(1 - v * (v + x))


@pytest.mark.parametrize("t", [-30.0, -20.0, -12.0])
def test_truncate_positive_lower_tail_against_high_precision(t, check):
    mean, var = _exact_truncated(t)
    out = argmax.truncate_positive(
        NatGaussian(torch.tensor([t], dtype=torch.float64), torch.ones(1, dtype=torch.float64))
    )
    check("truncate_positive tail vs mpmath", [out.mean, out.var], [[mean], [var]], 1e-6)


@pytest.mark.parametrize("t", [-300.0, -1000.0])
def test_truncate_positive_far_lower_tail(t):
    mean, var = _exact_truncated(t)
    out = argmax.truncate_positive(
        NatGaussian(torch.tensor([t], dtype=torch.float64), torch.ones(1, dtype=torch.float64))
    )
    assert out.var.item() == pytest.approx(var, rel=1e-6)


def test_float32_lower_tail():
    _, var = _exact_truncated(-7.0)
    out = argmax.truncate_positive(NatGaussian(torch.tensor([-7.0]), torch.tensor([1.0])))
    assert out.var.item() == pytest.approx(var, rel=1e-4)


def test_float32_to_logits_with_a_moderate_gap():
    m_in = NatGaussian.from_moments(torch.tensor([[0.0, 10.0]]), torch.tensor([[0.01, 0.01]]))
    got = argmax.to_logits(m_in, torch.tensor([0]), regularize=False)
    ref = argmax.to_logits(m_in.to(torch.float64), torch.tensor([0]), regularize=False)
    for g, r in ((got.tau, ref.tau), (got.rho, ref.rho)):  # float64 on the same inputs
        np.testing.assert_allclose(g.double().numpy(), r.numpy(), atol=1e-4 * float(r.abs().max()))


# ---------------------------------------------------------------------------------- to_logits
@pytest.mark.parametrize(
    ("regularize", "expected"),
    [
        (False, [(1.5298025, 0.6585731), (-0.3480751, 0.2296625), (-0.2227711, 0.1415257)]),
        (True, [(11.5298025, 10.6585731), (-10.3480751, 10.2296625), (-10.2227711, 10.1415257)]),
    ],
)
def test_to_logits_spec_vectors(regularize, expected, dtype, tol, check):
    m_in = NatGaussian.from_moments(_t([SPEC_MEAN], dtype), _t([SPEC_VAR], dtype))
    out = argmax.to_logits(m_in, torch.tensor([0]), regularize=regularize)
    assert out.dtype == dtype
    check("argmax spec to_logits", [out.tau[0], out.rho[0]], np.array(expected).T, tol.spec)


def _to_logits_reference(mean, var, target, regularize):
    """Moment form: truncate d_i (truncnorm), divide, map through d_i = x_t − x_i + ε."""
    k = len(mean)
    tau, rho = np.zeros(k), np.zeros(k)
    for i in range(k):
        if i == target:
            continue
        d_mean, d_var = mean[target] - mean[i], var[target] + var[i] + argmax.NOISE_VAR
        tilted = stats.truncnorm(
            -d_mean / math.sqrt(d_var), np.inf, loc=d_mean, scale=math.sqrt(d_var)
        )
        b_rho = 1 / tilted.var() - 1 / d_var
        if b_rho <= 1e-12 / d_var:  # no truncation to speak of: (numerically) uniform
            continue
        b_mean = (tilted.mean() / tilted.var() - d_mean / d_var) / b_rho
        # x_t = d + x_i − ε  and  x_i = x_t + ε − d  with d ~ N(b_mean, 1 / b_rho)
        t_mean, t_var = b_mean + mean[i], 1 / b_rho + var[i] + argmax.NOISE_VAR
        tau[target] += t_mean / t_var
        rho[target] += 1 / t_var
        o_mean, o_var = mean[target] - b_mean, 1 / b_rho + var[target] + argmax.NOISE_VAR
        p_positive = stats.norm.cdf(d_mean / math.sqrt(d_var))
        tau[i], rho[i] = p_positive * o_mean / o_var, p_positive / o_var
    if regularize:
        sign = np.where(np.arange(k) == target, 1.0, -1.0)
        tau += sign * argmax.REGULARIZER_MEAN / argmax.REGULARIZER_VAR
        rho += 1 / argmax.REGULARIZER_VAR
    return tau, rho


@pytest.mark.parametrize("regularize", [False, True])
@pytest.mark.parametrize("k", [2, 4, 10])
def test_to_logits_matches_moment_form(k, regularize, dtype, tol, check):
    mean, var = _random_logits(100 + k, 12, k, spread=3.0)
    target = np.random.default_rng(k).integers(0, k, size=12)
    m_in = NatGaussian.from_moments(_t(mean, dtype), _t(var, dtype))
    out = argmax.to_logits(m_in, torch.tensor(target), regularize=regularize)
    mm, vv = m_in.mean.double().numpy(), m_in.var.double().numpy()
    ref = [_to_logits_reference(mm[n], vv[n], target[n], regularize) for n in range(12)]
    ref_tau, ref_rho = np.array([r[0] for r in ref]), np.array([r[1] for r in ref])
    scale = [np.abs(ref_tau).max(), np.abs(ref_rho).max()]
    rtol = 1e-9 if dtype == torch.float64 else tol.exact
    check("argmax to_logits vs moment form", [out.tau, out.rho], [ref_tau, ref_rho], rtol, scale)
    assert bool((out.rho >= 0).all())


def test_to_logits_accepts_leading_dimensions(dtype):
    """``(R, G, K)`` logits with targets ``(G,)`` broadcast over ``R``: row by row."""
    mean, var = _random_logits(5, 6, 4)
    m_in = NatGaussian.from_moments(_t(mean, dtype), _t(var, dtype)).reshape(2, 3, 4)
    target = torch.tensor([0, 3, 1])
    out = argmax.to_logits(m_in, target, regularize=True)
    assert out.shape == (2, 3, 4)
    for r in range(2):
        row = argmax.to_logits(m_in[r], target, regularize=True)
        assert torch.equal(out.tau[r], row.tau)
        assert torch.equal(out.rho[r], row.rho)


def test_single_class_gets_no_comparison_message():
    m_in = NatGaussian.from_moments(torch.tensor([[0.3]]), torch.tensor([[2.0]])).to(torch.float64)
    out = argmax.to_logits(m_in, torch.tensor([0]), regularize=False)
    assert out.tau.item() == 0.0
    assert out.rho.item() == 0.0


def test_to_logits_with_a_huge_logit_gap_stays_proper():
    m_in = NatGaussian.from_moments(torch.tensor([[0.0, 3e4]]), torch.tensor([[1.0, 1.0]])).to(
        torch.float64
    )
    out = argmax.to_logits(m_in, torch.tensor([0]), regularize=False)
    # limit of the exact message for an overwhelming truncation: N(x_t; μ_i + ..., σ_i² + 0.3)
    assert out.rho[0, 0].item() == pytest.approx(1 / 1.3, rel=1e-3)


# ----------------------------------------------------------------------------------- fuzzing
_mean = st.floats(-1e3, 1e3)
_var = st.floats(1e-6, 1e6)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(2, 5).flatmap(
        lambda k: st.tuples(
            st.lists(_mean, min_size=k, max_size=k),
            st.lists(_var, min_size=k, max_size=k),
            st.integers(0, k - 1),
        )
    ),
    st.booleans(),
)
def test_fuzz_to_logits_is_finite_and_proper(logits, regularize):
    mean, var, target = logits
    m_in = NatGaussian.from_moments(
        torch.tensor([mean], dtype=torch.float64), torch.tensor([var], dtype=torch.float64)
    )
    out = argmax.to_logits(m_in, torch.tensor([target]), regularize=regularize)
    assert out.is_finite()
    assert bool((out.rho >= 0).all())
    p = argmax.predict(m_in.mean, m_in.var)
    assert bool(torch.isfinite(p).all())
    assert p.sum().item() == pytest.approx(1.0, abs=1e-12)


@settings(max_examples=150, deadline=None)
@given(_mean, st.floats(1e-2, 1e6))
def test_fuzz_truncate_positive_is_finite_and_proper(mean, var):
    out = argmax.truncate_positive(
        NatGaussian.from_moments(
            torch.tensor([mean], dtype=torch.float64), torch.tensor([var], dtype=torch.float64)
        )
    )
    assert out.is_finite()
    assert out.rho.item() >= 0
