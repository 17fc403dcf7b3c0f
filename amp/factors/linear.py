"""Fully connected product-sum factor ``s_{p,j} = Σ_i x_{p,i} W_{i,j} + b_j``.

One factor per output unit ``j`` and position ``p``: a fully connected layer has one position
(``P = 1``); a convolution (:mod:`amp.factors.conv2d`) has one per output pixel, all sharing the
kernel ``W`` (weight sharing). Tensors carry leading dimensions of examples (see
:func:`to_output`).

Which distribution of the weights enters depends on the layer (spec B.4):

* first weight layer (deterministic input ``x``): per-example **cavities** ``q_W / m_W[n]`` of the
  weights and the bias; the messages are exact EP messages (B.3.1, B.3.3);
* hidden layers (Gaussian input): the **marginal** ``q_W`` of the weights and the bias cavity; the
  messages to weights and inputs are variational product messages (B.3.2, B.3.4).

The functions do not care which: the caller passes the distributions to use.

Reference: ``forward_mult`` / ``backward_mult`` in ``lib/messages_gaussian_mult.jl``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from amp.factors.product_sum import product_moments, product_to_factor, sum_to_term
from amp.gaussian import NatGaussian

__all__ = [
    "LinearForward",
    "term_messages",
    "to_bias",
    "to_input",
    "to_output",
    "predict",
    "to_weight",
]


@dataclass(frozen=True)
class LinearForward:
    """Moments of a forward pass that the backward messages need.

    Attributes:
        x_mean: Input means, ``(*B, P, D_in)``.
        x_var: Input variances, ``(*B, P, D_in)``; ``None`` for a deterministic input.
        w_mean: Weight means, ``(*W, D_in, D_out)`` (see :func:`to_output`).
        w_var: Weight variances, same shape as ``w_mean``.
        b_mean: Bias means, ``(*W, D_out)``.
        b_var: Bias variances, same shape as ``b_mean``.
        out_mean: Means of the sums ``s``, ``(*B, P, D_out)``.
        out_var: Variances of the sums, ``(*B, P, D_out)``.
    """

    x_mean: Tensor
    x_var: Tensor | None
    w_mean: Tensor
    w_var: Tensor
    b_mean: Tensor
    b_var: Tensor
    out_mean: Tensor
    out_var: Tensor

    @property
    def x_m2(self) -> Tensor:
        """Second moments ``E[x²]`` of the inputs, ``(*B, P, D_in)``."""
        if self.x_var is None:
            return self.x_mean * self.x_mean
        return self.x_var + self.x_mean * self.x_mean

    def message(self) -> NatGaussian:
        """Forward message of the sums, N(out_mean, out_var), ``(*B, P, D_out)``."""
        return NatGaussian.from_moments(self.out_mean, self.out_var)


def to_output(
    x_mean: Tensor, x_var: Tensor | None, w: NatGaussian, b: NatGaussian
) -> LinearForward:
    """Forward moments of the sums (P1): the message to ``s``.

        μ_s = Σ_i E[x_i] μ_W,ij + μ_b,j,    σ²_s = Σ_i Var(x_i W_ij) + σ²_b,j.

    Shapes: inputs carry leading example dimensions ``B`` (e.g. ``(G,)``, or ``(R, G)`` for
    ``R`` networks trained together); weights and biases carry leading dimensions ``W`` that
    broadcast against them: ``()`` for weights shared by all examples, ``(G,)`` for one
    distribution per example (cavities), ``(R, 1)`` for one per network.

    Args:
        x_mean: Input means (or the deterministic inputs), ``(*B, P, D_in)``.
        x_var: Input variances, ``(*B, P, D_in)``; ``None`` for a deterministic input.
        w: Weight distribution, ``(*W, D_in, D_out)``.
        b: Bias distribution, ``(*W, D_out)``.

    Returns:
        The forward pass, whose :meth:`LinearForward.message` is the message to ``s``.
    """
    w_mean, w_var = w.mean, w.var
    b_mean, b_var = b.mean, b.var
    x_m2 = x_mean * x_mean
    out_mean = x_mean @ w_mean
    if x_var is None:
        out_var = x_m2 @ w_var
    else:
        out_var = x_var @ (w_var + w_mean * w_mean) + x_m2 @ w_var
    out_mean = out_mean + b_mean.unsqueeze(-2)
    out_var = out_var + b_var.unsqueeze(-2)
    return LinearForward(x_mean, x_var, w_mean, w_var, b_mean, b_var, out_mean, out_var)


def term_messages(fwd: LinearForward, m_back: NatGaussian) -> NatGaussian:
    """Messages from every sum factor to every product term ``z_{p,i,j} = x_{p,i} W_{i,j}`` (P2).

    Args:
        fwd: Forward pass of the same examples.
        m_back: Messages arriving at the sums, ``(*B, P, D_out)``.

    Returns:
        Messages to the terms, ``(*B, P, D_in, D_out)``.
    """
    w_mean, w_var = fwd.w_mean.unsqueeze(-3), fwd.w_var.unsqueeze(-3)
    x_mean = fwd.x_mean.unsqueeze(-1)
    if fwd.x_var is None:
        term_mean, term_var = x_mean * w_mean, x_mean * x_mean * w_var
    else:
        term_mean, term_var = product_moments(x_mean, fwd.x_var.unsqueeze(-1), w_mean, w_var)
    return sum_to_term(
        term_mean,
        term_var,
        fwd.out_mean.unsqueeze(-2),
        fwd.out_var.unsqueeze(-2),
        NatGaussian(m_back.tau.unsqueeze(-2), m_back.rho.unsqueeze(-2)),
    )


def to_weight(
    fwd: LinearForward, m_terms: NatGaussian, *, reduce_examples: bool = False
) -> NatGaussian:
    """Messages to the weights: ``τ = Σ_p E[x_pi] τ_z,pij``, ``ρ = Σ_p E[x_pi²] ρ_z,pij``.

    Positions multiply (weight sharing); for a deterministic input the message is exact, for a
    Gaussian input it is the variational product message.

    Args:
        fwd: Forward pass.
        m_terms: Output of :func:`term_messages`, ``(*B, P, D_in, D_out)``.
        reduce_examples: Return the product over the examples that share the weights (the
            result has the weights' shape) instead of one message per example.

    Returns:
        ``(*B, D_in, D_out)``, or the weights' shape when ``reduce_examples``.
    """
    msg = product_to_factor(m_terms, fwd.x_mean.unsqueeze(-1), fwd.x_m2.unsqueeze(-1)).sum(-3)
    return msg.sum_to(fwd.w_mean.shape) if reduce_examples else msg


def to_input(fwd: LinearForward, m_terms: NatGaussian) -> NatGaussian:
    """Variational messages to the inputs: ``τ = Σ_j μ_W,ij τ_z,pij``, ``ρ = Σ_j E[W_ij²] ρ_z,pij``.

    Args:
        fwd: Forward pass with Gaussian inputs.
        m_terms: Output of :func:`term_messages`, ``(*B, P, D_in, D_out)``.

    Returns:
        Messages to the inputs, ``(*B, P, D_in)`` (before any precision floor).
    """
    w_mean = fwd.w_mean.unsqueeze(-3)
    w_m2 = w_mean * w_mean + fwd.w_var.unsqueeze(-3)
    return product_to_factor(m_terms, w_mean, w_m2).sum(-1)


def to_bias(
    fwd: LinearForward, m_back: NatGaussian, *, reduce_examples: bool = False
) -> NatGaussian:
    """Exact messages to the biases (P2 with coefficient 1), multiplied over positions.

    Args:
        fwd: Forward pass.
        m_back: Messages arriving at the sums, ``(*B, P, D_out)``.
        reduce_examples: Return the product over the examples that share the biases.

    Returns:
        ``(*B, D_out)``, or the biases' shape when ``reduce_examples``.
    """
    msg = sum_to_term(
        fwd.b_mean.unsqueeze(-2), fwd.b_var.unsqueeze(-2), fwd.out_mean, fwd.out_var, m_back
    ).sum(-2)
    return msg.sum_to(fwd.b_mean.shape) if reduce_examples else msg


def predict(x_mean: Tensor, x_var: Tensor | None, w: NatGaussian, b: NatGaussian) -> NatGaussian:
    """Forward message for prediction: :func:`to_output` with the marginals, as a message."""
    return to_output(x_mean, x_var, w, b).message()


# --------------------------------------------------------------------------- series evaluation
SERIES_MAX_RATIO = 0.5
"""The series path is used only when every ratio ``r = ρ_b V / (1 + ρ_b σ²_s)`` is below this."""

SERIES_MAX_ORDER = 16
"""Largest order of the series; beyond it the exact elementwise path is cheaper."""

SERIES_TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-7, torch.float16: 1e-3}
"""Relative truncation error allowed per dtype (the bound ``U^(K+1) / (1 − U)``)."""


@dataclass(frozen=True)
class GroupMessages:
    """Backward messages of a group of examples computed by :func:`group_backward`.

    Attributes:
        to_weight: Product over the group's examples of the messages to the weights,
            ``(*lead, D_in, D_out)``.
        to_input: Messages to the inputs, ``(*B, D_in)`` (hidden layers), or ``None``.
        own_shift: ``δ_own[n, j] = Σ_i E[x_ni] Δμ_n,ij``: the shift of unit ``j``'s
            pre-activation that example ``n``'s weight message alone causes when multiplied
            into the weight marginal, ``(*B, D_out)``; ``None`` unless asked for.
        order: Order ``K`` of the truncated series that was used.
    """

    to_weight: NatGaussian
    to_input: NatGaussian | None
    own_shift: Tensor | None
    order: int


def group_backward(
    fwd: LinearForward,
    m_back: NatGaussian,
    *,
    to_input: bool,
    own_shift: bool = False,
    tolerance: float | None = None,
    max_terms: int | None = None,
) -> GroupMessages | None:
    """Backward messages of a group of examples by matrix products, without per-term tensors.

    With ``D = 1 + ρ_b σ²_s``, ``c = ρ_b / D`` and ``a = (τ_b − ρ_b μ_s) / D`` per example and
    output unit, the term messages of :func:`term_messages` are

        ρ_z = c / (1 − r),   τ_z = (a + c E[x] μ_W) / (1 − r),   r = c V < 1,

    where ``V = Var(x_i W_ij) = Var(x_i) E[W_ij²] + E[x_i]² Var(W_ij)`` is a sum of two
    separable terms. Expanding ``1/(1 − r) = Σ_k r^k`` turns every sum over examples (messages
    to the weights) and over output units (messages to the inputs) into matrix products of
    monomials; the series is truncated at the order ``K`` where the bound ``U^(K+1)/(1 − U)``
    on the relative error (``U ≥ max r``) drops below ``tolerance``. Applies to fully connected
    layers whose weights are shared by the group (``w`` of shape ``(*lead, 1, D_in, D_out)``).

    Args:
        fwd: Forward pass with one position (``P = 1``).
        m_back: Messages arriving at the sums, ``(*B, 1, D_out)``.
        to_input: Also compute the messages to the inputs (hidden layers).
        own_shift: Also compute each example's own pre-activation shift (scaled schedule).
        tolerance: Allowed relative truncation error; default per dtype.
        max_terms: Give up (return ``None``) when the series needs more monomials than this:
            each costs a few passes over the weights, while the elementwise path costs a few
            passes over the group's per-term tensor (about ``4 G`` monomials' worth).

    Returns:
        The messages, or ``None`` when the series does not converge fast enough (then use the
        elementwise path).
    """
    if fwd.x_mean.shape[-2] != 1 or fwd.w_mean.dim() < 3 or fwd.w_mean.shape[-3] != 1:
        return None
    dtype = fwd.w_mean.dtype
    tol = tolerance if tolerance is not None else SERIES_TOLERANCE[dtype]
    x = fwd.x_mean[..., 0, :]  # (*B, G, D_in); the example axis is the second to last
    xv = None if fwd.x_var is None else fwd.x_var[..., 0, :]
    mu, wv = fwd.w_mean.squeeze(-3), fwd.w_var.squeeze(-3)  # (*lead, D_in, D_out)
    rho_b, tau_b = m_back.rho[..., 0, :], m_back.tau[..., 0, :]  # (*B, G, D_out)
    den = 1.0 + rho_b * fwd.out_var[..., 0, :]
    c = rho_b / den
    a = (tau_b - rho_b * fwd.out_mean[..., 0, :]) / den
    x2 = x * x
    ew2 = wv + mu * mu

    # bound on r = c (xv·E[w²] + x²·var(w)) and the order of the series
    bound = x2.amax(-1) * (c * wv.amax(-2).unsqueeze(-2)).amax(-1)
    if xv is not None:
        bound = bound + xv.amax(-1) * (c * ew2.amax(-2).unsqueeze(-2)).amax(-1)
    u = float(bound.max()) if bound.numel() else 0.0
    if not math.isfinite(u) or u >= SERIES_MAX_RATIO:
        return None
    order = 0 if u == 0.0 else max(0, math.ceil(math.log(tol * (1 - u)) / math.log(u)) - 1)
    terms = order + 1 if xv is None else (order + 1) * (order + 2) // 2
    if order > SERIES_MAX_ORDER or (max_terms is not None and terms > max_terms):
        return None

    def t(m: Tensor) -> Tensor:
        return m.transpose(-1, -2)

    rho_w = torch.zeros_like(mu)
    tau_w = torch.zeros_like(mu)
    rho_x = tau_x = None
    if to_input:
        rho_x = (
            torch.zeros_like(x2 if xv is None else xv).expand(*c.shape[:-1], x.shape[-1]).clone()
        )
        tau_x = torch.zeros_like(rho_x)
    ex2 = x2 if xv is None else xv + x2
    c_pow = torch.ones_like(c)  # c^k
    for k in range(order + 1):
        c_next = c_pow * c  # c^(k+1)
        ac = a * c_pow
        for m in range(k + 1) if xv is not None else (0,):
            coef = math.comb(k, m)
            a_mono = x2 ** (k - m) if m == 0 else xv**m * x2 ** (k - m)  # (*B, G, D_in)
            b_mono = wv ** (k - m) if m == 0 else ew2**m * wv ** (k - m)  # (*lead, D_in, D_out)
            rho_w = rho_w + coef * b_mono * (t(ex2 * a_mono) @ c_next)
            tau_w = tau_w + coef * b_mono * (t(x * a_mono) @ ac + mu * (t(x2 * a_mono) @ c_next))
            if to_input:
                rho_x = rho_x + coef * a_mono * (c_next @ t(ew2 * b_mono))
                tau_x = tau_x + coef * a_mono * (
                    ac @ t(mu * b_mono) + x * (c_next @ t(mu * mu * b_mono))
                )
        c_pow = c_next
    shift = None
    if own_shift:
        if xv is None:
            shift = a * (x2 @ wv)
        else:
            shift = torch.zeros_like(c)
            c_pow = torch.ones_like(c)
            for k in range(order + 1):
                term = a * ((x2 * xv**k) @ (wv * mu ** (2 * k)))
                term = term - c * ((x * xv ** (k + 1)) @ (wv * mu ** (2 * k + 1)))
                shift = shift + c_pow * term
                c_pow = c_pow * c
    result = GroupMessages(
        NatGaussian(tau_w, rho_w),
        None if rho_x is None else NatGaussian(tau_x, rho_x),
        shift,
        order,
    )
    finite = result.to_weight.is_finite() and (rho_x is None or result.to_input.is_finite())
    return result if finite else None
