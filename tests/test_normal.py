"""Standard-normal helpers against scipy, quadrature and arbitrary precision (mpmath)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special, stats

from amp import normal

# per dtype: relative tolerance and the range of x where the function is representable
CASES = {
    torch.float64: {"rtol": 1e-13, "cdf_range": (-37.0, 9.0), "log_range": (-1e3, 30.0)},
    torch.float32: {"rtol": 2e-6, "cdf_range": (-12.0, 5.0), "log_range": (-1e2, 10.0)},
}


@pytest.fixture(params=list(CASES), ids=["f64", "f32"])
def dtype(request):
    return request.param


def _check(name, got, ref, rtol, record_property, dtype, atol=0.0):
    got = got.double().numpy()
    err = float(np.max(np.abs(got - ref) / (np.abs(ref) + atol)))
    record_property(f"relerr|{name}|{'f64' if dtype == torch.float64 else 'f32'}", err)
    assert got.dtype == np.float64
    assert err <= rtol, f"{name}: {err:.3e} > {rtol:.1e}"


def test_pdf_and_log_pdf(dtype, record_property):
    x = torch.linspace(-30, 30, 601, dtype=dtype)
    xx = x.double().numpy()
    assert normal.pdf(x).dtype == dtype
    rtol = CASES[dtype]["rtol"] * 100  # exp amplifies the rounding of x²/2 (≤ 450)
    ref = stats.norm.pdf(xx)
    keep = ref > (1e-300 if dtype == torch.float64 else 1e-37)
    _check("normal pdf", normal.pdf(x)[keep], ref[keep], rtol, record_property, dtype)
    _check(
        "normal log_pdf",
        normal.log_pdf(x),
        stats.norm.logpdf(xx),
        CASES[dtype]["rtol"],
        record_property,
        dtype,
    )


def test_cdf_is_accurate_in_both_tails(dtype, record_property):
    lo, hi = CASES[dtype]["cdf_range"]
    x = torch.linspace(lo, hi, 500, dtype=dtype)
    ref = special.ndtr(x.double().numpy())
    _check("normal cdf", normal.cdf(x), ref, CASES[dtype]["rtol"] * 100, record_property, dtype)


def test_log_cdf(dtype, record_property):
    lo, hi = CASES[dtype]["log_range"]
    x = torch.linspace(lo, hi, 700, dtype=dtype)
    ref = special.log_ndtr(x.double().numpy())
    _check(
        "normal log_cdf",
        normal.log_cdf(x),
        ref,
        CASES[dtype]["rtol"] * 10,
        record_property,
        dtype,
        atol=1e-300,
    )


def test_inverse_mills_ratio_against_high_precision(dtype, record_property):
    mpmath = pytest.importorskip("mpmath")
    lo, hi = CASES[dtype]["log_range"]
    x = torch.linspace(lo, hi, 300, dtype=dtype)
    with mpmath.workdps(50):
        ref = np.array([float(mpmath.npdf(v) / mpmath.ncdf(v)) for v in x.double().tolist()])
    # log φ − log Φ subtracts numbers of size x²/2: relative error ~ eps · x²/2 / v
    rtol = 1e-9 if dtype == torch.float64 else 2e-3
    _check(
        "normal inverse_mills_ratio",
        normal.inverse_mills_ratio(x),
        ref,
        rtol,
        record_property,
        dtype,
    )
    far = normal.inverse_mills_ratio(torch.tensor([-1e4], dtype=torch.float64)).item()
    assert far == pytest.approx(1e4, rel=1e-6)  # v(x) ≈ −x far in the lower tail


def test_normal_pdf(dtype, record_property):
    x = torch.tensor([0.3, -2.0, 10.0], dtype=dtype)
    mean = torch.tensor([0.0, 1.0, 9.0], dtype=dtype)
    var = torch.tensor([1.0, 0.25, 4.0], dtype=dtype)
    ref = stats.norm.pdf(x.double().numpy(), mean.double().numpy(), np.sqrt(var.double().numpy()))
    _check(
        "normal normal_pdf",
        normal.normal_pdf(x, mean, var),
        ref,
        CASES[dtype]["rtol"] * 10,
        record_property,
        dtype,
    )
    inf = normal.normal_pdf(x, mean, torch.full_like(var, math.inf))
    assert torch.equal(inf, torch.zeros_like(inf))  # uniform messages have zero density


def _relu_moments_by_quadrature(mean: float, var: float) -> tuple[float, float]:
    sd = math.sqrt(var)
    lo = max(0.0, mean - 40 * sd)
    hi = max(lo + 40 * sd, mean + 40 * sd)
    kw = {
        "epsabs": 0,
        "epsrel": 1e-13,
        "limit": 200,
        "points": [max(lo, mean)] if mean > lo else None,
    }

    def moment(k):
        return integrate.quad(lambda x: x**k * stats.norm.pdf(x, mean, sd), lo, hi, **kw)[0]

    return moment(1), moment(2)


@pytest.mark.parametrize("t", [-8.0, -3.0, -0.5, 0.0, 1.0, 4.0, 10.0])
@pytest.mark.parametrize("sd", [0.01, 1.0, 30.0])
def test_relu_moments_match_quadrature(t, sd, dtype, record_property):
    mean, var = t * sd, sd * sd
    m1, m2 = normal.relu_moments(
        torch.tensor([mean], dtype=dtype), torch.tensor([var], dtype=dtype)
    )
    mm = torch.tensor(mean, dtype=dtype).double().item()
    vv = torch.tensor(var, dtype=dtype).double().item()
    r1, r2 = _relu_moments_by_quadrature(mm, vv)
    # the closed form cancels for t < 0 (σφ(t) ≈ |μ|Φ(t)): allow for it
    rtol = (1e-12 if dtype == torch.float64 else 1e-5) * (1 + t * t) ** 2
    _check(
        "normal relu_moments", torch.cat([m1, m2]), np.array([r1, r2]), rtol, record_property, dtype
    )
