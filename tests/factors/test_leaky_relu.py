"""LeakyReLU factor against the spec's test vectors and against quadrature of the tilted densities.

The reference integrates the *exact* tilted densities numerically, written directly as products
of Gaussian densities (no truncated-Gaussian formulas):

* backward, over ``a``: ``m_f(a) · m_b(f(a))``;
* forward, over ``z``: ``m_b(z) · p(z)`` with the pushforward density ``p(z) = m_f(z)`` for
  ``z > 0`` and ``m_f(z / leak) / leak`` for ``z < 0``;
* prediction: the moments of ``p`` alone.

Each half-line is integrated with composite 16-point Gauss–Legendre panels in a variable scaled
to the width of the integrand (cross-checked against ``scipy.integrate.quad``), and the reference
rules of spec B.3.5 are applied to the exact moments.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from amp.factors import leaky_relu
from amp.gaussian import NatGaussian
from amp.runtime import call_compiled

SPAN = 45.0  # integrand below exp(-45) of its peak beyond this many scaled units
PANEL = 0.5
GL_X, GL_W = np.polynomial.legendre.leggauss(16)
LOG_MIN_MASS = math.log(1e-8)
UNDERFLOW_ZONE = (-800.0, -650.0)  # masses the code's direct φ evaluation cannot represent


# ----------------------------------------------------------------------------- quadrature
def _scaled_range(sign: int, rho: float, lin: float) -> tuple[float, float, float]:
    """Origin ``a0``, unit ``h`` and lower limit of the scaled variable on ``{sign·v > 0}``."""
    centre, width = sign * lin / rho, 1.0 / math.sqrt(rho)
    if centre >= 0:
        return centre, width, max(-SPAN, -centre / width)
    return 0.0, min(width, width * width / -centre), 0.0  # decays away from the kink


def _half_line(logw, sign: int, rho: float, lin: float, use_quad: bool = False):
    """``(log mass, mean, var)`` of ``exp(logw(v))`` restricted to ``sign·v > 0``."""
    a0, h, lo = _scaled_range(sign, rho, lin)
    if use_quad:
        peak = float(logw(np.array([sign * (a0 + h * max(lo, 0.0))]))[0])

        def f(x):
            return np.exp(logw(np.array([sign * (a0 + h * x)]))[0] - peak) * np.array(
                [1.0, x, x * x]
            )

        ints, _ = integrate.quad_vec(f, lo, SPAN, epsabs=0, epsrel=1e-13, norm="max")
    else:
        n = max(1, math.ceil((SPAN - lo) / PANEL))
        edges = np.linspace(lo, SPAN, n + 1)
        half, mid = np.diff(edges)[:, None] / 2, (edges[:-1] + edges[1:])[:, None] / 2
        x, w = (mid + half * GL_X).ravel(), (half * GL_W).ravel()
        lw = logw(sign * (a0 + h * x))
        peak = lw.max()
        e = np.exp(lw - peak) * w
        ints = np.array([e.sum(), (e * x).sum(), (e * x * x).sum()])
    if ints[0] <= 0:
        return -math.inf, 0.0, 0.0
    m1, m2 = ints[1] / ints[0], ints[2] / ints[0]
    return peak + math.log(h) + math.log(ints[0]), sign * (a0 + h * m1), h * h * (m2 - m1 * m1)


def _combine(pieces):
    logm = np.array([p[0] for p in pieces])
    top = logm.max()
    w = np.exp(logm - top)
    means, variances = np.array([p[1] for p in pieces]), np.array([p[2] for p in pieces])
    mean = (w * means).sum() / w.sum()
    var = (w * (variances + (means - mean) ** 2)).sum() / w.sum()
    return top + math.log(w.sum()), mean, var


def _logpdf(x, mean, var):
    return stats.norm.logpdf(x, mean, math.sqrt(var))


def backward_tilted(f, b, leak, use_quad=False):
    """Exact moments of ``m_f(a) m_b(f(a))``; ``f``, ``b`` are ``(tau, rho)``."""
    (tf, rf), (tb, rb) = f, b

    def logw(a):
        return _logpdf(a, tf / rf, 1 / rf) + _logpdf(np.where(a > 0, a, leak * a), tb / rb, 1 / rb)

    return _combine(
        [
            _half_line(logw, +1, rf + rb, tf + tb, use_quad),
            _half_line(logw, -1, rf + leak**2 * rb, tf + leak * tb, use_quad),
        ]
    )


def _log_pushforward(z, f, leak):
    tf, rf = f
    return np.where(
        z > 0, _logpdf(z, tf / rf, 1 / rf), _logpdf(z / leak, tf / rf, 1 / rf) - math.log(leak)
    )


def forward_tilted(f, b, leak, use_quad=False):
    """Exact moments of ``m_b(z) p(z)``."""
    (tf, rf), (tb, rb) = f, b

    def logw(z):
        return _logpdf(z, tb / rb, 1 / rb) + _log_pushforward(z, f, leak)

    return _combine(
        [
            _half_line(logw, +1, rb + rf, tb + tf, use_quad),
            _half_line(logw, -1, rb + rf / leak**2, tb + tf / leak, use_quad),
        ]
    )


def pushforward(f, leak):
    """Exact moments of ``leaky(a)``, ``a ~ m_f``."""
    tf, rf = f
    _, mean, var = _combine(
        [
            _half_line(lambda z: _log_pushforward(z, f, leak), +1, rf, tf),
            _half_line(lambda z: _log_pushforward(z, f, leak), -1, rf / leak**2, tf / leak),
        ]
    )
    return mean, var


# ------------------------------------------------------------------ reference messages + rules
def ref_to_input(f, b, leak):
    """``(message, scale, branch)`` by the rules of B.3.5(d) on exact moments."""
    logm, mean, var = backward_tilted(f, b, leak)
    rho = max(f[1] + leaky_relu.BACKWARD_EXTRA_PRECISION, 1.0 / var)
    tau = mean * rho
    scale = (abs(tau) + math.sqrt(rho), rho)
    if b[0] < 0 and b[1] < leaky_relu.BACKWARD_UNIFORM_PRECISION:
        return (0.0, 0.0), scale, "uniform"
    if logm < UNDERFLOW_ZONE[0]:
        return (0.0, 0.0), scale, "underflow"  # the reference's φ underflows: 0/0 -> uniform
    if UNDERFLOW_ZONE[0] <= logm <= UNDERFLOW_ZONE[1]:
        return None, scale, "skip"
    branch = "clamp" if 1.0 / var < f[1] + leaky_relu.BACKWARD_EXTRA_PRECISION else "ep"
    return (tau - f[0], rho - f[1]), scale, branch


def ref_to_output(f, b, leak):
    """``(candidates, branch)``; near a rule's threshold both branches are accepted."""
    logm, mean, var = forward_tilted(f, b, leak)
    pm, pv = pushforward(f, leak)
    fallback = ((pm / pv, 1 / pv), (math.sqrt(1 / pv), 0.0))
    rho_t, tau_t = 1 / var, mean / var
    ep = ((tau_t - b[0], rho_t - b[1]), (abs(tau_t) + math.sqrt(rho_t), rho_t))
    by_mass, by_precision = logm < LOG_MIN_MASS, rho_t < f[1] + b[1]
    branch = "mass" if by_mass else "precision" if by_precision else "ep"
    near = abs(logm - LOG_MIN_MASS) < 1e-6 or abs(rho_t - f[1] - b[1]) <= 1e-8 * (f[1] + b[1])
    if near:
        return [ep, fallback], "near"
    return [ep if branch == "ep" else fallback], branch


# ------------------------------------------------------------------------------- samples
def _triples(seed: int, n: int) -> list[tuple[float, float, float, float, float]]:
    """(tau_f, rho_f, tau_b, rho_b, leak): |μ|/σ ≤ 30, variances 1e-6 … 1e6, leak 0.01 … 1."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        vf, vb = 10.0 ** rng.uniform(-6, 6, 2)
        mf = (rng.uniform(-30, 30) if rng.random() < 0.3 else rng.normal(0, 2)) * math.sqrt(vf)
        leak = 1.0 if rng.random() < 0.1 else float(10.0 ** rng.uniform(-2, 0))
        pushed, pushed_var = (mf, vf) if mf > 0 else (leak * mf, leak**2 * vf)
        if rng.random() < 0.6:  # a backward message that roughly agrees with the forward one
            mb = pushed + rng.normal(0, 2) * math.sqrt(vb + pushed_var)
        else:
            mb = rng.uniform(-30, 30) * math.sqrt(vb)
        mb = float(np.clip(mb, -30 * math.sqrt(vb), 30 * math.sqrt(vb)))
        out.append((mf / vf, 1 / vf, mb / vb, 1 / vb, leak))
    for tf_, tb_ in [(30, 30), (-30, 30), (30, -30), (-30, -30), (0, 30), (30, 0), (-3, -1)]:
        for vf, vb in [(1e-6, 1e6), (1e6, 1e-6), (1e-6, 1e-6), (1e6, 1e6), (1.0, 1e8)]:
            for leak in (0.1, 1.0):
                mf, mb = tf_ * math.sqrt(vf), tb_ * math.sqrt(vb)
                out.append((mf / vf, 1 / vf, mb / vb, 1 / vb, leak))
    return out


TRIPLES = _triples(2024, 300)


def _as_dtype(values, dtype):
    """Round to ``dtype`` and return the float64 values the factor actually sees."""
    return [float(v) for v in torch.tensor(values, dtype=torch.float64).to(dtype).double()]


@pytest.fixture(scope="module")
def cases():
    """Rounded triples and their references for both dtypes (computed once)."""
    out = {}
    for dtype in (torch.float64, torch.float32):
        rows = []
        for tf, rf, tb, rb, leak in TRIPLES:
            tf, rf, tb, rb = _as_dtype([tf, rf, tb, rb], dtype)
            f, b = (tf, rf), (tb, rb)
            rows.append((f, b, leak, ref_to_input(f, b, leak), ref_to_output(f, b, leak)))
        out[dtype] = rows
    return out


def _nat(values, dtype=torch.float64):
    tau, rho = zip(*values, strict=True)
    return NatGaussian(torch.tensor(tau, dtype=dtype), torch.tensor(rho, dtype=dtype))


def _one(f, dtype=torch.float64):
    return _nat([f], dtype)


def _pair(g: NatGaussian) -> tuple[float, float]:
    return float(g.tau.double()[0]), float(g.rho.double()[0])


def _assert_same(a: NatGaussian, b: NatGaussian) -> None:
    assert torch.equal(a.tau, b.tau)
    assert torch.equal(a.rho, b.rho)


# ------------------------------------------------------------------------------ spec data
SPEC = [  # m_f, m_b as (mean, var); forward (tau, rho); backward after the floor (tau, rho)
    ((0.3, 2.0), (-0.5, 0.7), (1.2741216, 6.9373460), (-0.7536647, 0.4976114)),
    ((-1.0, 0.5), (0.8, 0.2), (-3.4748375, 8.1959609), (0.8044425, 1.0e-8)),
    ((2.0, 1.0), (1.5, 4.0), (2.0410250, 1.0217360), (0.3218590, 0.2263168)),
    ((-3.0, 0.1), (2.0, 0.05), (-300.0, 1000.0), (4.0, 0.2)),
]


def _moments(mv, dtype):
    return NatGaussian.from_moments(
        torch.tensor([mv[0]], dtype=dtype), torch.tensor([mv[1]], dtype=dtype)
    )


# ---------------------------------------------------------------------- the quadrature itself
@pytest.mark.parametrize("index", [0, 3, 7, 11, 305, 320, 333])
def test_gauss_legendre_reference_agrees_with_adaptive_quad(index):
    tf, rf, tb, rb, leak = TRIPLES[index]
    for tilted in (backward_tilted, forward_tilted):
        a = tilted((tf, rf), (tb, rb), leak)
        q = tilted((tf, rf), (tb, rb), leak, use_quad=True)
        assert a[0] == pytest.approx(q[0], rel=1e-11, abs=1e-11)
        assert a[1] == pytest.approx(q[1], rel=1e-11, abs=1e-11 * math.sqrt(a[2]))
        assert a[2] == pytest.approx(q[2], rel=1e-10)


@pytest.mark.parametrize("row", range(4))
def test_reference_reproduces_the_spec_vectors(row):
    mf, mb, fwd, bwd = SPEC[row]
    f, b = _pair(_moments(mf, torch.float64)), _pair(_moments(mb, torch.float64))
    (candidate,), _ = ref_to_output(f, b, 0.1)
    assert candidate[0] == pytest.approx(fwd, rel=1e-6)
    msg, _, _ = ref_to_input(f, b, 0.1)
    assert (msg[0], max(msg[1], 1e-8)) == pytest.approx(bwd, rel=1e-6)


@pytest.mark.parametrize("row", range(len(SPEC)))
def test_spec_vectors(row, dtype, tol, check):
    mf, mb, fwd, bwd = SPEC[row]
    f, b = _moments(mf, dtype), _moments(mb, dtype)
    out = leaky_relu.to_output(f, b, 0.1)
    back = leaky_relu.to_input(f, b, 0.1)
    assert out.dtype == back.dtype == dtype
    check("leaky spec forward", [out.tau, out.rho], [[fwd[0]], [fwd[1]]], tol.spec)
    check("leaky spec backward", list(_pair(back.floor_precision())), bwd, tol.spec)


def test_spec_clamp_case_before_the_floor():
    f, b = _moments((-1.0, 0.5), torch.float64), _moments((0.8, 0.2), torch.float64)
    back = leaky_relu.to_input(f, b, 0.1)
    assert back.rho.item() == pytest.approx(1e-8, rel=1e-6)  # (ρ_f + 1e-8) − ρ_f, rounded
    _, mean, var = backward_tilted(_pair(f), _pair(b), 0.1)
    assert 1 / var - f.rho.item() == pytest.approx(-0.404, abs=1e-3)  # exact EP ρ < 0
    assert back.mul(f).mean.item() == pytest.approx(mean, rel=1e-9)  # tilted mean kept


def test_spec_uniform_backward_falls_back_to_moment_matching(dtype, tol, check):
    f = _moments((0.3, 2.0), dtype)
    out = leaky_relu.to_output(f, NatGaussian.uniform((1,), dtype=dtype), 0.1)
    check("leaky spec fallback", list(_pair(out)), (0.7396076, 1.0810561), tol.spec)
    assert torch.equal(out.tau, leaky_relu.predict(f, 0.1).tau)
    assert out.mean.item() == pytest.approx(0.6841528, rel=tol.spec)
    assert out.var.item() == pytest.approx(0.9250214, rel=tol.spec)


@pytest.mark.parametrize("row", range(len(SPEC)))
def test_leak_one_is_the_identity(row, dtype, tol, check):
    mf, mb, _, _ = SPEC[row]
    f, b = _moments(mf, dtype), _moments(mb, dtype)
    check("leaky leak=1 forward", list(_pair(leaky_relu.to_output(f, b, 1.0))), _pair(f), tol.exact)
    check("leaky leak=1 backward", list(_pair(leaky_relu.to_input(f, b, 1.0))), _pair(b), tol.exact)
    check("leaky leak=1 predict", list(_pair(leaky_relu.predict(f, 1.0))), _pair(f), tol.exact)


# ------------------------------------------------------------------- quadrature comparisons
@pytest.fixture(params=["eager", "compiled"])
def messages(request):
    """``(to_input, to_output)`` evaluated eagerly or by their compiled kernels (the fast path
    of compiled layers): both must meet the quadrature references."""
    if request.param == "eager":
        return leaky_relu.to_input, leaky_relu.to_output

    def by_kernel(fn):
        def run(*args):
            out = call_compiled(fn, *args)
            assert out is not None, "the kernel did not compile"
            return out

        return run

    return by_kernel(leaky_relu.to_input), by_kernel(leaky_relu.to_output)


def test_to_input_matches_quadrature(cases, dtype, tol, check, messages):
    got, ref, scale, branches = [], [], [], []
    for f, b, leak, (msg, sc, branch), _ in cases[dtype]:
        branches.append(branch)
        if msg is None:
            continue
        out = messages[0](_one(f, dtype), _one(b, dtype), leak)
        assert out.dtype == dtype
        got.append(_pair(out))
        ref.append(msg)
        scale.append(sc)
        if branch in ("uniform", "underflow"):
            assert _pair(out) == (0.0, 0.0), (f, b, leak)
    check("leaky to_input vs quadrature", got, ref, tol.quad, scale)
    for branch, least in [("ep", 250), ("clamp", 40), ("uniform", 4), ("underflow", 4)]:
        assert branches.count(branch) >= least, (branch, branches.count(branch))


def test_to_output_matches_quadrature(cases, dtype, tol, check, messages):
    got, ref, scale, branches = [], [], [], []
    for f, b, leak, _, (candidates, branch) in cases[dtype]:
        out = _pair(messages[1](_one(f, dtype), _one(b, dtype), leak))
        errors = [
            max(abs(o - r) / (s + abs(r)) for o, r, s in zip(out, msg, sc, strict=True))
            for msg, sc in candidates
        ]
        msg, sc = candidates[int(np.argmin(errors))]
        got.append(out)
        ref.append(msg)
        scale.append(sc)
        branches.append(branch)
    check("leaky to_output vs quadrature", got, ref, tol.quad, scale)
    for branch, least in [("ep", 100), ("mass", 40), ("precision", 8), ("near", 50)]:
        assert branches.count(branch) >= least, (branch, branches.count(branch))


def test_predict_matches_quadrature_of_the_pushforward(cases, dtype, tol, check):
    got, ref, scale = [], [], []
    for f, _, leak, _, _ in cases[dtype]:
        mean, var = pushforward(f, leak)
        got.append(_pair(leaky_relu.predict(_one(f, dtype), leak)))
        ref.append((mean / var, 1 / var))
        scale.append((math.sqrt(1 / var), 0.0))
    check("leaky predict vs quadrature", got, ref, tol.quad, scale)


# ------------------------------------------------------------------------ rules and branches
def test_forward_falls_back_when_the_tilted_mass_is_tiny():
    f, b = _one((5.0 / 0.01, 1 / 0.01)), _one((-5.0 / 0.01, 1 / 0.01))  # N(5, .01) vs N(-5, .01)
    assert ref_to_output(_pair(f), _pair(b), 0.1)[1] == "mass"
    _assert_same(leaky_relu.to_output(f, b, 0.1), leaky_relu.predict(f, 0.1))


def test_forward_falls_back_when_the_tilted_precision_is_too_small():
    # N(0.5, 0.05) and N(0.25, 0.004): the compressed negative part widens the tilted density
    f, b = _one((0.5 / 0.05, 1 / 0.05)), _one((0.25 / 0.004, 1 / 0.004))
    assert ref_to_output(_pair(f), _pair(b), 0.1)[1] == "precision"
    _assert_same(leaky_relu.to_output(f, b, 0.1), leaky_relu.predict(f, 0.1))


def test_forward_uses_the_ep_message_otherwise():
    f, b = _one((0.3 / 2.0, 0.5)), _one((-0.5 / 0.7, 1 / 0.7))
    assert ref_to_output(_pair(f), _pair(b), 0.1)[1] == "ep"
    out, matched = leaky_relu.to_output(f, b, 0.1), leaky_relu.predict(f, 0.1)
    assert abs(out.rho.item() - matched.rho.item()) > 1.0


@pytest.mark.parametrize(
    ("tau_b", "rho_b", "uniform"),
    [(-1e-9, 1e-8, True), (-1e-9, 1.99e-8, True), (-1e-9, 2.01e-8, False), (1e-9, 1e-8, False)],
)
def test_backward_uniform_rule(tau_b, rho_b, uniform):
    out = leaky_relu.to_input(_one((0.5, 1.0)), _one((tau_b, rho_b)), 0.1)
    assert (out.tau.item() == 0.0 and out.rho.item() == 0.0) is uniform


def test_backward_clamp_keeps_the_tilted_mean(cases):
    clamped = [(f, b, leak) for f, b, leak, (_, _, br), _ in cases[torch.float64] if br == "clamp"]
    assert clamped
    for f, b, leak in clamped:
        out = leaky_relu.to_input(_one(f), _one(b), leak)
        _, mean, _ = backward_tilted(f, b, leak)
        assert out.rho.item() == pytest.approx(1e-8, rel=1e-6, abs=4 * f[1] * 2.2e-16)
        marginal = out.mul(_one(f))
        assert marginal.mean.item() == pytest.approx(mean, rel=1e-8, abs=1e-8 / math.sqrt(f[1]))


@pytest.mark.parametrize("leak", [0.01, 0.1, 1.0])
def test_uniform_backward_message(leak, dtype):
    f = NatGaussian.from_moments(
        torch.tensor([-2.0, 0.0, 3.0], dtype=dtype), torch.tensor([0.5, 1.0, 4.0], dtype=dtype)
    )
    u = NatGaussian.uniform((3,), dtype=dtype)
    back = leaky_relu.to_input(f, u, leak)
    assert torch.equal(back.tau, torch.zeros(3, dtype=dtype))
    assert torch.equal(back.rho, torch.zeros(3, dtype=dtype))
    _assert_same(leaky_relu.to_output(f, u, leak), leaky_relu.predict(f, leak))


def test_messages_are_elementwise_over_any_shape():
    rows = [((tf, rf), (tb, rb)) for tf, rf, tb, rb, leak in TRIPLES if leak == 0.1][:12]
    f = _nat([r[0] for r in rows]).reshape(3, 4)
    b = _nat([r[1] for r in rows]).reshape(3, 4)
    for fn in (leaky_relu.to_input, leaky_relu.to_output):
        batch = fn(f, b, 0.1).reshape(12)
        for k, (fk, bk) in enumerate(rows):
            single = fn(_one(fk), _one(bk), 0.1)
            assert _pair(batch[k : k + 1]) == _pair(single)


# ------------------------------------------------------------------------------ fuzzing
_mean = st.floats(-1e3, 1e3)
_log_var = st.floats(-8, 8)
_leak = st.one_of(st.just(1.0), st.floats(0.01, 1.0))


def _g(mean, var):
    return NatGaussian.from_moments(
        torch.tensor([mean], dtype=torch.float64), torch.tensor([var], dtype=torch.float64)
    )


@settings(max_examples=200, deadline=None)
@given(_mean, _log_var, _mean, _log_var, _leak)
def test_fuzz_messages_are_finite_and_proper(mf, vf, mb, vb, leak):
    f, b = _g(mf, 10.0**vf), _g(mb, 10.0**vb)
    for out in (
        leaky_relu.to_output(f, b, leak),
        leaky_relu.to_input(f, b, leak),
        leaky_relu.predict(f, leak),
    ):
        assert out.is_finite(), (out, mf, vf, mb, vb, leak)
        assert bool((out.rho >= 0).all()), (out, mf, vf, mb, vb, leak)


def test_extreme_mean_to_sd_ratio_gives_a_finite_forward_message():
    f, b = _g(1e3, 1e-10), _g(0.0, 1e8)
    out = leaky_relu.to_output(f, b, 1.0)  # leak = 1: the exact message is m_f itself
    assert out.is_finite()
    assert out.rho.item() == pytest.approx(f.rho.item(), rel=1e-3)
