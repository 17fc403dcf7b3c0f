"""The two primitive computations of the fused product-sum factor ``s = Σ_k a_k b_k + c``.

Reference: ``lib/messages_gaussian_mult.jl`` (``forward_mult``, ``backward_mult``); spec B.2.

* **P1** (:func:`product_moments`, then sums): forward moments of the terms and of the sum.
* **P2** (:func:`sum_to_term`): the exact message from the sum factor to one term
  ``t_k = a_k b_k`` given the forward moments of the whole sum (``m_pred``) and the message
  arriving at ``s`` (``m_back``). :func:`product_to_factor` then maps it through the product:
  exactly for a deterministic coefficient, as the variational (VMP) message for a Gaussian one.
"""

from __future__ import annotations

from torch import Tensor

from amp.gaussian import NatGaussian

__all__ = ["product_moments", "product_to_factor", "sum_to_term"]


def product_moments(
    a_mean: Tensor, a_var: Tensor, b_mean: Tensor, b_var: Tensor
) -> tuple[Tensor, Tensor]:
    """Mean and variance of ``a * b`` for independent ``a``, ``b`` (P1).

    The variance is computed as ``var_a var_b + var_a mean_b² + mean_a² var_b``, a sum of
    non-negative terms, instead of ``E[a²]E[b²] − mean_a² mean_b²``, which cancels badly.
    A deterministic ``a`` has ``a_var = 0``.

    Args:
        a_mean: Mean of ``a``.
        a_var: Variance of ``a`` (0 for a deterministic coefficient).
        b_mean: Mean of ``b``, broadcastable with the others.
        b_var: Variance of ``b``.

    Returns:
        ``(mean, var)`` of the product.
    """
    mean = a_mean * b_mean
    var = a_var * b_var + a_var * b_mean * b_mean + a_mean * a_mean * b_var
    return mean, var


def sum_to_term(
    term_mean: Tensor,
    term_var: Tensor,
    sum_mean: Tensor,
    sum_var: Tensor,
    m_back: NatGaussian,
) -> NatGaussian:
    """Exact message from the sum factor ``s = Σ_k t_k + c`` to one term ``t_k`` (P2).

    The rest of the sum has mean ``sum_mean − term_mean`` and variance ``sum_var − term_var``,
    so the message is N(t; μ_b − μ_rest, σ_b² + σ²_rest); in natural parameters

        den = 1 + ρ_b (σ²_s − V_k),   ρ_t = ρ_b / den,   τ_t = (τ_b − ρ_b (μ_s − E_k)) / den.

    A uniform ``m_back`` (ρ_b = 0, τ_b = 0) gives a uniform message. The rest variance is clamped
    at zero against rounding (it is a sum of variances in exact arithmetic), so ``den >= 1``.

    Args:
        term_mean: Forward mean ``E_k`` of the term.
        term_var: Forward variance ``V_k`` of the term.
        sum_mean: Forward mean ``μ_s`` of the sum (including this term).
        sum_var: Forward variance ``σ²_s`` of the sum.
        m_back: Message arriving at ``s``; all arguments broadcast together.

    Returns:
        The message to the term.
    """
    rest_var = (sum_var - term_var).clamp_min(0.0)
    den = 1.0 + m_back.rho * rest_var
    rho = m_back.rho / den
    tau = (m_back.tau - m_back.rho * (sum_mean - term_mean)) / den
    return NatGaussian(tau, rho)


def product_to_factor(m_term: NatGaussian, coeff_mean: Tensor, coeff_m2: Tensor) -> NatGaussian:
    """Map a message on ``t = a * b`` to a message on ``b``.

    ``exp(E_a[log N(a b; μ_t, σ_t²)])`` gives ``ρ = E[a²] ρ_t`` and ``τ = E[a] τ_t``: the
    variational (VMP) message of the product factor (Stern et al., "Matchbox"). For a
    deterministic coefficient (``E[a²] = a²``) it is the exact message.

    Args:
        m_term: Message to the product variable ``t``.
        coeff_mean: ``E[a]``, broadcastable.
        coeff_m2: ``E[a²]``, broadcastable.

    Returns:
        The message to ``b``.
    """
    return NatGaussian(coeff_mean * m_term.tau, coeff_m2 * m_term.rho)
