"""Argmax classification factor: the label's logit exceeds every other logit (spec B.3.8).

For each non-target logit ``i`` the factor graph has ``d_i = x_t − x_i + ε_i`` with
``ε_i ~ N(0, NOISE_VAR)`` and the indicator ``1[d_i > 0]``. Messages to the logits come from
truncating ``d_i`` (EP) and mapping the result back through the sum ``d_i``; the messages to
non-target logits are then precision-scaled by ``P(d_i > 0)``, a heuristic of the reference.

Both computations run in float64 whatever the input dtype (the truncation moments cancel
badly in float32) and are cast back.

Prediction treats the logits as independent Gaussians and uses the pairwise-probit product
``p_j ∝ Π_{i≠j} Φ((μ_j − μ_i) / √(σ_i² + σ_j² + NOISE_VAR))`` (no sampling, no softmax).

Reference: ``forward_argmax`` / ``backward_argmax`` in ``lib/message_equations.jl`` and
``truncated`` in ``lib/gaussian.jl``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from amp import normal
from amp.factors.product_sum import sum_to_term
from amp.gaussian import NatGaussian

__all__ = [
    "NOISE_VAR",
    "REGULARIZER_MEAN",
    "REGULARIZER_VAR",
    "predict",
    "to_logits",
    "truncate_positive",
]

NOISE_VAR = 0.3
"""Variance of the comparison noise ε_i (hard-coded in the reference, training and prediction)."""

REGULARIZER_MEAN = 1.0
"""With ``regularize``, the target logit gets N(+1, 0.1) and every other logit N(−1, 0.1)."""

REGULARIZER_VAR = 0.1
"""Variance of the regularising pseudo-observations."""

_MIN_TRUNCATION_FACTOR = 1e-300
"""Keeps ``w = 1 − v(v + t)`` positive where it underflows."""

ASYMPTOTIC_BELOW = 40.0
"""For t < −40 the truncated moments use their asymptotic series in 1/t² (four terms:
relative error below 1e-10 there): v + t = 1/α − 2/α³ + 10/α⁵ − 74/α⁷ + 706/α⁹ and
w = 1/α² − 6/α⁴ + 50/α⁶ − 518/α⁸ with α = −t, from the Mills-ratio expansion."""

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)


def predict(mean: Tensor, var: Tensor, noise_var: float = NOISE_VAR) -> Tensor:
    """Class probabilities of independent Gaussian logits (``forward_argmax``).

    Computed in log space and normalised with a softmax, which equals the reference's normalised
    product of probits wherever that does not underflow.

    Args:
        mean: Logit means, ``(..., K)``.
        var: Logit variances, ``(..., K)``.
        noise_var: Comparison noise variance.

    Returns:
        Probabilities, ``(..., K)``, summing to one along the last axis.
    """
    dtype = mean.dtype
    mean, var = mean.double(), var.double()
    diff = mean.unsqueeze(-1) - mean.unsqueeze(-2)  # [..., j, i] = μ_j − μ_i
    scale = torch.sqrt(var.unsqueeze(-1) + var.unsqueeze(-2) + noise_var)
    log_terms = normal.log_cdf(diff / scale)
    log_terms = log_terms - torch.diag_embed(torch.diagonal(log_terms, dim1=-2, dim2=-1))
    return torch.softmax(log_terms.sum(-1), dim=-1).to(dtype)


def truncate_positive(m: NatGaussian) -> NatGaussian:
    """Moment-matched ``m(d) · 1[d > 0]`` (``truncated``): mean μ + vσ, variance σ² w.

    With t = μ/σ, v = φ(t)/Φ(t) and w = 1 − v(v + t). ``v`` is computed from the scaled
    complementary error function, ``v = √(2/π) / erfcx(−t/√2)``, accurate far into the lower
    tail; below t = −:data:`ASYMPTOTIC_BELOW` (where ``v + t`` and ``w`` cancel) the asymptotic
    series of the truncated normal's moments take over. Computed in float64.
    """
    tau, rho = m.tau.double(), m.rho.double()
    sqrt_rho = torch.sqrt(rho)
    t = tau / sqrt_rho
    v = _SQRT_2_OVER_PI / torch.special.erfcx(-t * _INV_SQRT_2)
    shift, w = t + v, 1.0 - v * (v + t)
    far = t < -ASYMPTOTIC_BELOW
    if bool(far.any()):
        inv = 1.0 / torch.where(far, -t, torch.full_like(t, ASYMPTOTIC_BELOW)) ** 2  # 1/α²
        alpha = torch.sqrt(1.0 / inv)
        shift_far = (1 + inv * (-2 + inv * (10 + inv * (-74 + 706 * inv)))) / alpha
        w_far = inv * (1 + inv * (-6 + inv * (50 - 518 * inv)))
        shift, w = torch.where(far, shift_far, shift), torch.where(far, w_far, w)
    w = w.clamp(_MIN_TRUNCATION_FACTOR, 1.0)
    out = NatGaussian(sqrt_rho * shift / w, rho / w)
    return out.to(m.dtype)


def to_logits(
    m_in: NatGaussian, target: Tensor, *, regularize: bool, noise_var: float = NOISE_VAR
) -> NatGaussian:
    """Backward messages to all logits given the label.

    Args:
        m_in: Forward messages of the logits, ``(..., K)``.
        target: Class indices (int64), broadcastable to ``m_in``'s leading shape ``(...)``.
        regularize: Add the N(±1, 0.1) pseudo-observations.
        noise_var: Comparison noise variance.

    Returns:
        Messages to the logits, ``(..., K)``.
    """
    mean, var = m_in.mean.double(), m_in.var.double()
    target = target.expand(mean.shape[:-1]).unsqueeze(-1)
    is_target = torch.zeros_like(mean, dtype=torch.bool).scatter_(-1, target, True)
    t_mean = mean.gather(-1, target)
    t_var = var.gather(-1, target)

    # d_i = x_t − x_i + ε_i for every i (the i = t column is computed but masked out)
    d_mean = t_mean - mean
    d_var = t_var + var + noise_var
    d_fwd = NatGaussian.from_moments(d_mean, d_var)
    d_back = truncate_positive(d_fwd).div(d_fwd)

    # to x_t: term x_t (coefficient +1) inside each d_i, product over i ≠ t
    to_target = sum_to_term(t_mean, t_var, d_mean, d_var, d_back)
    keep = ~is_target
    target_tau = torch.where(keep, to_target.tau, 0.0).sum(-1)
    target_rho = torch.where(keep, to_target.rho, 0.0).sum(-1)

    # to x_i: term −x_i (coefficient −1), precision scaled by P(d_i > 0)
    to_other = sum_to_term(-mean, var, d_mean, d_var, d_back)
    p_positive = normal.cdf(d_mean / torch.sqrt(d_var))
    other_tau = -to_other.tau * p_positive
    other_rho = to_other.rho * p_positive

    tau = torch.where(is_target, target_tau.unsqueeze(-1), other_tau)
    rho = torch.where(is_target, target_rho.unsqueeze(-1), other_rho)
    if regularize:
        precision = 1.0 / REGULARIZER_VAR
        sign = torch.where(is_target, 1.0, -1.0).to(tau.dtype)
        tau = tau + sign * REGULARIZER_MEAN * precision
        rho = rho + precision
    return NatGaussian(tau, rho).to(m_in.dtype)
