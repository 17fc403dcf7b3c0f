"""LeakyReLU factor ``z = a`` for ``a > 0`` and ``z = leak * a`` otherwise (spec B.3.5).

Messages (elementwise; any shape):

* :func:`predict` — forward-only moment matching of N(μ, σ²) pushed through the rectifier; used
  at prediction time and as the fallback of :func:`to_output`.
* :func:`to_output` — EP message to ``z``: moment matching of the tilted distribution
  ``m_in(a) · m_back(z) · δ(z − f(a))``, divided by ``m_back``.
* :func:`to_input` — EP message to ``a``: the same tilted distribution over ``a``, divided by
  ``m_in``, with the reference's clamp and uniform fallbacks.

All computations run in float64 whatever the input dtype (the moment formulas cancel badly in
float32; the cost is negligible next to the weight layers) and are cast back.

Reference: ``forward_leaky_relu_factor``, ``backward_leaky_relu_factor``, ``block52`` and
``moments_relu_factor`` in ``lib/message_equations.jl``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from amp import normal
from amp.gaussian import NatGaussian

__all__ = [
    "BACKWARD_EXTRA_PRECISION",
    "BACKWARD_UNIFORM_PRECISION",
    "FORWARD_MIN_MASS",
    "predict",
    "to_input",
    "to_output",
]

FORWARD_MIN_MASS = 1e-8
"""Tilted mass below which the EP forward message falls back to moment matching."""

BACKWARD_EXTRA_PRECISION = 1e-8
"""The backward tilted precision is at least ``ρ_in + 1e-8``: the message keeps ρ ≥ 1e-8."""

BACKWARD_UNIFORM_PRECISION = 2e-8
"""A backward message with ``τ_b < 0`` and ``ρ_b < 2e-8`` yields a uniform message."""


def _f64(g: NatGaussian) -> NatGaussian:
    return NatGaussian(g.tau.double(), g.rho.double())


def _leaky_moments(mean: Tensor, var: Tensor, leak: float) -> tuple[Tensor, Tensor]:
    """Mean and variance of ``leaky(X)``, ``X ~ N(mean, var)``, without cancellation.

    With t = μ/σ and r(t) = Var(relu(N(t, 1))) = t²Φ(t)Φ(−t) + Φ(t) + tφ(t)(1 − 2Φ(t)) − φ(t)²:

        E[z]   = (1 − leak) E[relu(X)] + leak μ,
        Var[z] = σ² [(1 − leak)² r(t) + leak² + 2 leak (1 − leak) Φ(t)],

    using Cov(X, relu(X)) = σ²Φ(t). Equals the reference's ``m2 − μ²`` form in exact arithmetic.
    """
    std = torch.sqrt(var)
    t = mean / std
    phi, big_phi, big_phi_neg = normal.pdf(t), normal.cdf(t), normal.cdf(-t)
    relu_mean = std * phi + mean * big_phi
    r = t * t * big_phi * big_phi_neg + big_phi + t * phi * (big_phi_neg - big_phi) - phi * phi
    out_mean = (1.0 - leak) * relu_mean + leak * mean
    out_var = var * ((1.0 - leak) ** 2 * r + leak**2 + 2.0 * leak * (1.0 - leak) * big_phi)
    return out_mean, out_var


def predict(m_in: NatGaussian, leak: float) -> NatGaussian:
    """Forward-only moment matching: N(E[leaky(a)], Var[leaky(a)]) for ``a ~ m_in``.

    Args:
        m_in: Messages (or marginals) of the pre-activations; proper, any shape.
        leak: Slope for negative inputs.

    Returns:
        The moment-matched Gaussian of the activations.
    """
    g = _f64(m_in)
    mean, var = _leaky_moments(g.mean, g.var, leak)
    return NatGaussian.from_moments(mean, var).to(m_in.dtype)


def _truncated_moments(g1: NatGaussian, g2: NatGaussian) -> tuple[Tensor, Tensor, Tensor]:
    """Unnormalised moments 0–2 of ``g1 · g2`` restricted to the positive half-line (``block52``).

    With the product N(μ_c, σ_c²) and its normaliser n = N(μ_1; μ_2, σ_1² + σ_2²) (0 if a
    variance is infinite): ``m0 = n Φ(μ_c/σ_c)``, ``m1 = n E[relu]``, ``m2 = n E[relu²]``.
    """
    rho_c = g1.rho + g2.rho
    mean_c = (g1.tau + g2.tau) / rho_c
    var_c = 1.0 / rho_c
    norm = normal.normal_pdf(g1.mean, g2.mean, g1.var + g2.var)
    m1, m2 = normal.relu_moments(mean_c, var_c)
    return norm * normal.cdf(mean_c / torch.sqrt(var_c)), norm * m1, norm * m2


def _mass_to_gaussian(m0: Tensor, m1: Tensor, m2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    mean = m1 / m0
    var = m2 / m0 - mean * mean
    return mean, var, 1.0 / var


def to_output(m_in: NatGaussian, m_back: NatGaussian, leak: float) -> NatGaussian:
    """EP message to the activation ``z``.

    The tilted distribution over ``z`` has a part for ``z > 0`` (``block52(m_in, m_back)``) and one
    for ``z < 0`` computed over ``u = −z`` with the variables ``−z ~ m_back`` and ``−leak·a ~ m_in``
    (no Jacobian: both are densities in ``u``). Falls back to :func:`predict` when the tilted mass
    is below :data:`FORWARD_MIN_MASS`, the moments are not finite (the reference checks NaN;
    an infinite precision from a variance that cancelled to zero is treated alike), or the tilted
    precision is below
    ``ρ_in + ρ_back`` (which would make the message improper). At the first visit of a batch
    ``m_back`` is uniform, the mass is 0 and the fallback applies.

    Args:
        m_in: Forward messages on ``a``, any shape.
        m_back: Last backward messages on ``z`` of the same examples, same shape.
        leak: Slope for negative inputs.

    Returns:
        Forward messages on ``z``.
    """
    f, b = _f64(m_in), _f64(m_back)
    p0, p1, p2 = _truncated_moments(f, b)
    n0, n1, n2 = _truncated_moments(b.scale(-1.0), f.scale(-leak))
    m0 = p0 + n0
    mean, _, rho = _mass_to_gaussian(m0, p1 - n1, p2 + n2)
    tau = mean * rho
    fallback = (
        (m0 < FORWARD_MIN_MASS)
        | ~torch.isfinite(rho)  # NaN, or a tilted variance that cancelled to zero
        | ~torch.isfinite(tau)
        | ~(rho >= f.rho + b.rho)  # also true for NaN
    )
    matched = predict(f, leak)
    out = NatGaussian(
        torch.where(fallback, matched.tau, tau - b.tau),
        torch.where(fallback, matched.rho, rho - b.rho),
    )
    return out.to(m_in.dtype)


def to_input(m_in: NatGaussian, m_back: NatGaussian, leak: float) -> NatGaussian:
    """EP message to the pre-activation ``a`` (before the layer's precision floor).

    The ``a < 0`` part of the tilted distribution is ``block52(−a ~ m_in, −a ~ m_back/(−leak))``
    divided by ``leak`` (the Jacobian of ``m_back(leak·a)``). The tilted precision is clamped to at
    least ``ρ_in + 1e-8`` (keeping the tilted mean), and the message is uniform when the result is
    not finite or when ``τ_back < 0`` and ``ρ_back < 2e-8``.

    Args:
        m_in: Forward messages on ``a`` of the same examples, any shape.
        m_back: Backward messages on ``z``, same shape.
        leak: Slope for negative inputs.

    Returns:
        Backward messages on ``a``.
    """
    f, b = _f64(m_in), _f64(m_back)
    p0, p1, p2 = _truncated_moments(f, b)
    n0, n1, n2 = _truncated_moments(f.scale(-1.0), b.scale(-1.0 / leak))
    mean, var, _ = _mass_to_gaussian(p0 + n0 / leak, p1 - n1 / leak, p2 + n2 / leak)
    rho = torch.maximum(f.rho + BACKWARD_EXTRA_PRECISION, 1.0 / var)
    tau = mean * rho
    uniform = (
        ~torch.isfinite(rho)
        | ~torch.isfinite(tau)
        | ((b.tau < 0) & (b.rho < BACKWARD_UNIFORM_PRECISION))
    )
    zero = torch.zeros_like(tau)
    out = NatGaussian(
        torch.where(uniform, zero, tau - f.tau), torch.where(uniform, zero, rho - f.rho)
    )
    return out.to(m_in.dtype)
