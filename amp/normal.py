"""Numerically stable helpers for the standard normal distribution.

All functions act elementwise on tensors of any shape and keep their dtype.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "cdf",
    "inverse_mills_ratio",
    "log_cdf",
    "log_pdf",
    "normal_pdf",
    "pdf",
    "relu_moments",
]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)


def pdf(x: Tensor) -> Tensor:
    """Standard normal density φ(x)."""
    return torch.exp(log_pdf(x))


def log_pdf(x: Tensor) -> Tensor:
    """Logarithm of the standard normal density."""
    return -0.5 * x * x - _LOG_SQRT_2PI


def cdf(x: Tensor) -> Tensor:
    """Standard normal distribution function Φ(x) = erfc(−x/√2)/2 (accurate in both tails)."""
    return 0.5 * torch.special.erfc(-x * _INV_SQRT_2)


def log_cdf(x: Tensor) -> Tensor:
    """Logarithm of Φ(x), accurate far into the lower tail."""
    return torch.special.log_ndtr(x)


def inverse_mills_ratio(x: Tensor) -> Tensor:
    """v(x) = φ(x)/Φ(x), computed in log space so that it stays finite for x ≪ 0.

    For x → −∞, v(x) ≈ −x; for x → +∞, v(x) → 0. Reference: ``truncated`` in
    ``lib/gaussian.jl`` (``exp(logpdf - logcdf)``).
    """
    return torch.exp(log_pdf(x) - log_cdf(x))


def normal_pdf(x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    """Density of N(mean, var) at x; 0 where the variance is infinite (uniform message)."""
    z2 = (x - mean) ** 2 / var
    density = torch.exp(-0.5 * z2 - _LOG_SQRT_2PI) / torch.sqrt(var)
    return torch.where(torch.isinf(var), torch.zeros_like(density), density)


def relu_moments(mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
    """First two raw moments of ``max(0, X)`` for ``X ~ N(mean, var)``.

    With σ = √var and t = mean/σ:

        E[relu(X)]  = σ φ(t) + mean Φ(t),
        E[relu(X)²] = σ mean φ(t) + (var + mean²) Φ(t).

    Args:
        mean: Means, any shape.
        var: Positive variances, same shape.

    Returns:
        ``(E[relu(X)], E[relu(X)^2])``.
    """
    std = torch.sqrt(var)
    t = mean / std
    phi = pdf(t)
    big_phi = cdf(t)
    m1 = std * phi + mean * big_phi
    m2 = std * mean * phi + (var + mean * mean) * big_phi
    return m1, m2
