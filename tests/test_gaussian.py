"""NatGaussian: conversions, density algebra, variable transforms and guardrails.

References: scipy densities (a product of densities is the density of the product up to a
constant), sampling for the variable transforms, and the definitions of spec A.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from amp.gaussian import MIN_PRECISION, NatGaussian, ema

DTYPES = [torch.float64, torch.float32]
TOL = {torch.float64: 1e-13, torch.float32: 1e-6}  # rounding of a few float operations


@pytest.fixture(params=DTYPES, ids=["f64", "f32"])
def dtype(request):
    return request.param


def _random(seed: int, shape=(4, 5), dtype=torch.float64, mean_scale=3.0):
    gen = torch.Generator().manual_seed(seed)
    mean = mean_scale * torch.randn(shape, generator=gen, dtype=torch.float64)
    var = 10.0 ** (4 * torch.rand(shape, generator=gen, dtype=torch.float64) - 2)
    return mean.to(dtype), var.to(dtype)


def _label(dtype) -> str:
    return "f64" if dtype == torch.float64 else "f32"


def _close(got, ref, rtol, record_property=None, name=""):
    """Relative error check; recorded as ``relerr|name|dtype of got`` when a recorder is given."""
    label = _label(torch.as_tensor(got).dtype)
    got, ref = torch.as_tensor(got).double(), torch.as_tensor(ref).double()
    err = float(((got - ref).abs() / ref.abs().clamp_min(1e-300)).max())
    if record_property is not None:
        record_property(f"relerr|{name}|{label}", err)
    assert err <= rtol, f"{name}: relative error {err:.3e} > {rtol:.1e}"


# ----------------------------------------------------------------------------- conversions
def test_moments_round_trip(dtype, record_property):
    mean, var = _random(0, dtype=dtype)
    g = NatGaussian.from_moments(mean, var)
    assert g.dtype == dtype
    assert g.shape == mean.shape
    _close(g.mean, mean, TOL[dtype], record_property, "gaussian mean round trip")
    _close(g.var, var, TOL[dtype], record_property, "gaussian var round trip")
    _close(g.m2, var + mean * mean, TOL[dtype], record_property, "gaussian m2")
    _close(g.rho, 1 / var.double(), TOL[dtype])
    _close(g.tau, mean.double() / var.double(), TOL[dtype])


def test_mean_m2_round_trip(dtype):
    mean, var = _random(1, dtype=dtype, mean_scale=1.0)
    g = NatGaussian.from_mean_m2(mean, var + mean * mean)
    _close(g.mean, mean, 10 * TOL[dtype])
    _close(g.var, var, 100 * TOL[dtype])


def test_uniform_is_the_neutral_element(dtype):
    u = NatGaussian.uniform((2, 3), dtype=dtype)
    assert u.dtype == dtype
    assert u.shape == (2, 3)
    assert torch.equal(u.tau, torch.zeros(2, 3, dtype=dtype))
    assert torch.equal(u.rho, torch.zeros(2, 3, dtype=dtype))
    assert torch.equal(u.mean, torch.zeros(2, 3, dtype=dtype))  # defined as 0
    assert torch.all(torch.isinf(u.var))
    assert torch.all(torch.isinf(u.m2))
    assert bool(u.is_uniform().all())
    assert bool(u.is_proper().all())
    mean, var = _random(2, shape=(2, 3), dtype=dtype)
    g = NatGaussian.from_moments(mean, var)
    assert torch.equal(g.mul(u).tau, g.tau)
    assert torch.equal(g.div(u).rho, g.rho)


def test_mean_of_zero_precision_is_zero_even_with_nonzero_tau():
    g = NatGaussian(torch.tensor([3.0, 0.0]), torch.tensor([0.0, 2.0]))
    assert g.mean.tolist() == [0.0, 0.0]


def test_mean_keeps_nan_and_reads_negative_zero_precision_as_uniform():
    g = NatGaussian(
        torch.tensor([1.0, math.nan, 2.0, -4.0]), torch.tensor([-0.0, 1.0, math.nan, 2.0])
    )
    mean = g.mean
    assert mean[0].item() == 0.0
    assert mean[3].item() == -2.0
    assert math.isnan(mean[1].item())
    assert math.isnan(mean[2].item())


def test_infinite_variance_gives_the_uniform_message():
    g = NatGaussian.from_moments(torch.tensor([0.7]), torch.tensor([math.inf]))
    assert g.rho.item() == 0.0
    assert g.tau.item() == 0.0


# ------------------------------------------------------------------------- density algebra
def _log_density(g: NatGaussian, x: np.ndarray) -> np.ndarray:
    return stats.norm.logpdf(x[:, None], g.mean.double().numpy(), g.var.double().sqrt().numpy())


def test_mul_is_the_product_of_densities(record_property):
    a = NatGaussian.from_moments(*_random(3, shape=(6,))).to(torch.float64)
    b = NatGaussian.from_moments(*_random(4, shape=(6,))).to(torch.float64)
    x = np.linspace(-2, 2, 7)
    diff = _log_density(a, x) + _log_density(b, x) - _log_density(a.mul(b), x)
    spread = np.ptp(diff, axis=0)  # constant in x
    record_property("relerr|gaussian mul vs product of densities|f64", float(spread.max()))
    assert spread.max() <= 1e-9


def test_div_undoes_mul(dtype, record_property):
    a = NatGaussian.from_moments(*_random(5, dtype=dtype))
    b = NatGaussian.from_moments(*_random(6, dtype=dtype))
    back = a.mul(b).div(b)
    scale_tau = a.tau.abs() + b.tau.abs()
    scale_rho = a.rho + b.rho
    err = max(
        float(((back.tau - a.tau).abs() / scale_tau).max()),
        float(((back.rho - a.rho).abs() / scale_rho).max()),
    )
    record_property(
        f"relerr|gaussian div(mul(a,b),b)|{'f64' if dtype == torch.float64 else 'f32'}", err
    )
    assert err <= TOL[dtype]
    assert torch.equal(a.mul(b).tau, b.mul(a).tau)


def test_div_is_the_ratio_of_densities():
    a = NatGaussian.from_moments(torch.tensor([0.3, -1.0]), torch.tensor([0.2, 0.5])).to(
        torch.float64
    )
    b = NatGaussian.from_moments(torch.tensor([1.0, 2.0]), torch.tensor([2.0, 4.0])).to(
        torch.float64
    )
    x = np.linspace(-2, 2, 7)
    diff = _log_density(a, x) - _log_density(b, x) - _log_density(a.div(b), x)
    assert np.ptp(diff, axis=0).max() <= 1e-9


def test_sum_is_the_product_along_an_axis(dtype):
    g = NatGaussian.from_moments(*_random(7, dtype=dtype))
    prod = g[0]
    for k in range(1, g.shape[0]):
        prod = prod.mul(g[k])
    _close(g.sum(0).rho, prod.rho, TOL[dtype])
    _close(g.sum(0).tau, prod.tau, 10 * TOL[dtype] + 1e-12)


# ----------------------------------------------------------------------- variable transforms
@pytest.mark.parametrize("a", [2.5, -0.4])
def test_scale_is_the_distribution_of_a_times_x(a, dtype, record_property):
    mean, var = _random(8, shape=(3,), dtype=dtype)
    g = NatGaussian.from_moments(mean, var)
    s = g.scale(a)
    _close(s.mean, a * mean.double(), 10 * TOL[dtype], record_property, "gaussian scale mean")
    _close(s.var, a * a * var.double(), 10 * TOL[dtype], record_property, "gaussian scale var")
    gen = torch.Generator().manual_seed(9)
    n = 200_000
    x = mean.double() + var.double().sqrt() * torch.randn(n, 3, generator=gen, dtype=torch.float64)
    sample = a * x
    sd = sample.std(0)
    assert torch.all((s.mean.double() - sample.mean(0)).abs() <= 5 * sd / math.sqrt(n))
    assert torch.all((s.var.double() - sample.var(0)).abs() <= 5 * sd**2 * math.sqrt(2 / n))


@pytest.mark.parametrize("c", [4.0, -0.3])
def test_shift_is_the_distribution_of_x_plus_c(c, dtype):
    mean, var = _random(10, shape=(3,), dtype=dtype)
    g = NatGaussian.from_moments(mean, var)
    s = g.shift(c)
    _close(s.mean, mean.double() + c, 10 * TOL[dtype])
    _close(s.var, var, TOL[dtype])
    gen = torch.Generator().manual_seed(11)
    n = 200_000
    x = mean.double() + var.double().sqrt() * torch.randn(n, 3, generator=gen, dtype=torch.float64)
    sample = x + c
    assert torch.all((s.mean.double() - sample.mean(0)).abs() <= 5 * sample.std(0) / math.sqrt(n))


# --------------------------------------------------------------------------------- guardrails
def test_floor_precision_keeps_the_mean_and_floors_rho(dtype):
    mean = torch.tensor([1.5, -2.0, 0.0, 4.0], dtype=dtype)
    rho = torch.tensor([1e-12, 3.0, 0.0, 5e-9], dtype=dtype)
    g = NatGaussian(mean * rho, rho)
    f = g.floor_precision()
    expected_rho = torch.tensor([MIN_PRECISION, 3.0, MIN_PRECISION, MIN_PRECISION], dtype=dtype)
    assert torch.equal(f.rho, expected_rho)
    _close(f.mean[[0, 1, 3]], mean[[0, 1, 3]], 10 * TOL[dtype])
    assert f.mean[2].item() == 0.0  # uniform -> N(0, 1/min_rho)
    assert f.tau[2].item() == 0.0
    custom = g.floor_precision(0.5)
    assert custom.rho.tolist() == pytest.approx([0.5, 3.0, 0.5, 0.5])
    _close(custom.mean[[0, 1, 3]], mean[[0, 1, 3]], 10 * TOL[dtype])


def test_scale_precision_keeps_the_mean(dtype):
    mean, var = _random(12, shape=(5,), dtype=dtype)
    g = NatGaussian.from_moments(mean, var)
    s = g.scale_precision(0.25)
    _close(s.mean, mean, 10 * TOL[dtype])
    _close(s.var, 4 * var.double(), 10 * TOL[dtype])


def test_ema_endpoints_and_interpolation(dtype):
    old = NatGaussian.from_moments(*_random(13, dtype=dtype))
    new = NatGaussian.from_moments(*_random(14, dtype=dtype))
    at0, at1 = ema(old, new, 0.0), ema(old, new, 1.0)
    assert torch.equal(at0.tau, old.tau)
    assert torch.equal(at0.rho, old.rho)
    assert torch.equal(at1.tau, new.tau)
    assert torch.equal(at1.rho, new.rho)
    mid = ema(old, new, 0.3)
    _close(mid.rho, 0.7 * old.rho.double() + 0.3 * new.rho.double(), 10 * TOL[dtype])


# ------------------------------------------------------------------------ tensor utilities
def test_tensor_utilities():
    g = NatGaussian.from_moments(*_random(15, shape=(2, 6)))
    assert g[1].shape == (6,)
    assert g.reshape(3, 4).shape == (3, 4)
    assert g.to(torch.float32).dtype == torch.float32
    c = g.clone()
    c.tau.zero_()
    assert not torch.equal(c.tau, g.tau)
    both = NatGaussian.cat([g, g], dim=1)
    assert both.shape == (2, 12)
    assert torch.equal(both.rho[:, 6:], g.rho)
    assert g.is_finite()
    assert not NatGaussian(torch.tensor([math.nan]), torch.tensor([1.0])).is_finite()
    assert NatGaussian(torch.tensor([0.0]), torch.tensor([-1.0])).is_proper().tolist() == [False]
    other = NatGaussian(g.tau + 0.5, g.rho - 0.25)
    assert g.max_abs_diff(other) == pytest.approx(0.5)


def test_sum_to_take_put_and_add():
    g = NatGaussian.from_moments(*_random(16, shape=(3, 2, 4)))
    reduced = g.sum_to((1, 2, 4))
    assert torch.allclose(reduced.tau, g.tau.sum(0, keepdim=True), rtol=1e-14)
    assert torch.allclose(reduced.rho, g.rho.sum(0, keepdim=True), rtol=1e-14)
    index = torch.tensor([2, 0])
    taken = g.take(0, index)
    assert torch.equal(taken.tau, g.tau[[2, 0]])
    assert torch.equal(g.take(1, 1).rho, g.rho[:, 1])
    h = g.clone()
    h.put_(0, index, NatGaussian.uniform((2, 2, 4)))
    assert torch.equal(h.rho[[0, 2]], torch.zeros(2, 2, 4, dtype=torch.float64))
    assert torch.equal(h.rho[1], g.rho[1])
    h.put_(1, 0, g.take(1, 1))
    assert torch.equal(h.tau[:, 0], g.tau[:, 1])
    acc = g.clone()
    acc.add_(g)
    assert torch.equal(acc.tau, 2 * g.tau)
    assert torch.equal(acc.rho, g.mul(g).rho)
