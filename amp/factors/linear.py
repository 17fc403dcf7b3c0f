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


def _matmul(x: Tensor, w: Tensor) -> Tensor:
    """``x (*B, P, D_in) @ w (*W, D_in, D_out)`` without expanding weights shared by the examples.

    When the weights have a singleton example axis (``(*lead, 1, D_in, D_out)``), the examples
    and positions are folded into the rows of one matrix product per network instead of letting
    broadcasting copy the weights once per example.
    """
    if w.dim() >= 3 and w.shape[-3] == 1 and x.dim() >= 3:
        lead = torch.broadcast_shapes(x.shape[:-3], w.shape[:-3])
        g, p, d_in = x.shape[-3:]
        rows = x.expand(*lead, g, p, d_in).reshape(*lead, g * p, d_in)
        return (rows @ w.squeeze(-3)).reshape(*lead, g, p, w.shape[-1])
    return x @ w


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
    out_mean = _matmul(x_mean, w_mean)
    if x_var is None:
        out_var = _matmul(x_m2, w_var)
    else:
        out_var = _matmul(x_var, w_var + w_mean * w_mean) + _matmul(x_m2, w_var)
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

SERIES_TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-7, torch.float16: 1e-3}
"""Relative truncation error allowed per dtype (the bound ``U^(K+1) / (1 − U)``)."""


@dataclass(frozen=True)
class GroupMessages:
    """Backward messages of a group of examples computed by :func:`group_backward`.

    Attributes:
        to_weight: Messages to the weights: the product over the group's examples
            ``(*lead, D_in, D_out)``, or per example ``(*B, G, D_in, D_out)``.
        to_input: Messages to the inputs, ``(*B, G, P, D_in)`` (hidden layers), or ``None``.
        order: Order ``K`` of the truncated series that was used.
    """

    to_weight: NatGaussian
    to_input: NatGaussian | None
    order: int


def _series_order(u: float, tol: float) -> int:
    """Smallest ``K`` with ``u^(K+1) / (1 − u) ≤ tol``."""
    if u <= 0.0:
        return 0
    return max(0, math.ceil(math.log(tol * (1 - u)) / math.log(u)) - 1)


SERIES_COST = {"elementwise": 25.0, "weights": 6.0, "inputs": 4.0}
"""Rough passes over memory per term tensor entry (elementwise evaluation), per weight entry and
monomial (series, weight side) and per input entry and monomial (series, input side): the series
is used while it needs fewer monomials than the cost of the elementwise evaluation allows."""


def _term_budget(rows: int, d_out: int, weight_copies: int) -> float:
    """Monomials the series may use before it costs more than the elementwise evaluation.

    Args:
        rows: Examples × positions the messages are summed over.
        d_out: Output units.
        weight_copies: Weight-shaped accumulators per monomial (the examples when the weight
            messages are kept per example, else 1).
    """
    cost = SERIES_COST
    return (
        cost["elementwise"]
        * rows
        * d_out
        / (cost["weights"] * d_out * weight_copies + cost["inputs"] * rows)
    )


def _affordable_order(budget: float, *, deterministic: bool) -> int:
    """Largest series order whose monomials fit the budget (-1: none does)."""
    if deterministic:  # monomials E[x]^(2k) only: K + 1 of them
        return math.floor(budget) - 1
    order = -1
    while (order + 2) * (order + 3) // 2 <= budget:  # (K + 1)(K + 2) / 2 monomials
        order += 1
    return order


SERIES_EXACT_ROWS = 0.25
"""Above this fraction of exactly evaluated input rows, the whole layer is evaluated exactly."""


def group_backward(
    fwd: LinearForward,
    m_back: NatGaussian,
    *,
    with_input: bool,
    per_example: bool = False,
    tolerance: float | None = None,
) -> GroupMessages | None:
    """Backward messages of a group of examples by matrix products, without per-term tensors.

    With ``D = 1 + ρ_b σ²_s``, ``c = ρ_b / D`` and ``a = (τ_b − ρ_b μ_s) / D`` per example,
    position and output unit, the term messages of :func:`term_messages` are

        ρ_z = c / (1 − r),   τ_z = (a + c E[x] μ_W) / (1 − r),   r = c V < 1,

    where ``V = Var(x_i W_ij) = Var(x_i) E[W_ij²] + E[x_i]² Var(W_ij)`` is a sum of two
    separable terms. Expanding ``1/(1 − r) = Σ_k r^k`` turns every sum over examples and
    positions (messages to the weights) and over output units (messages to the inputs) into
    matrix products of monomials ``Var(x)^m (E[x]²)^j`` and ``E[W²]^m Var(W)^j``
    (``m + j = k``). The series is truncated at the order ``K`` where the bound
    ``U^(K+1)/(1 − U)`` on the relative error (``U ≥ r``) drops below ``tolerance``. A bound per
    input row, ``U_i = max_{n,p} max_j c_npj · (Var(x_npi) max_j E[W_ij²] + E[x_npi]² max_j
    Var(W_ij))``, sends the few rows whose ratio is large (an input with a large second moment)
    to the exact elementwise evaluation, so that the other rows need only an order the cost model
    :data:`SERIES_COST` affords. Applies to weights shared by the group (``w`` of shape
    ``(*lead, 1, D_in, D_out)``), for fully connected layers (one position) and convolutions
    (one position per output pixel; the weights then multiply over positions).

    Args:
        fwd: Forward pass, ``P ≥ 1`` positions.
        m_back: Messages arriving at the sums, ``(*B, G, P, D_out)``.
        with_input: Also compute the messages to the inputs (hidden layers).
        per_example: Return the messages to the weights per example (multiplied over the
            positions only), ``(*B, G, D_in, D_out)``, instead of over the whole group.
        tolerance: Allowed relative truncation error; default per dtype.

    Returns:
        The messages (inputs: ``(*B, G, P, D_in)``), or ``None`` when too many rows would need
        the exact evaluation (then evaluate the whole layer elementwise).
    """
    if fwd.w_mean.dim() < 3 or fwd.w_mean.shape[-3] != 1:
        return None
    dtype = fwd.w_mean.dtype
    tol = tolerance if tolerance is not None else SERIES_TOLERANCE[dtype]
    mu, wv = fwd.w_mean.squeeze(-3), fwd.w_var.squeeze(-3)  # (*lead, D_in, D_out)
    rho_b, tau_b = m_back.rho, m_back.tau  # (*B, G, P, D_out)
    den = 1.0 + rho_b * fwd.out_var
    c = rho_b / den
    a = (tau_b - rho_b * fwd.out_mean) / den
    x, xv = fwd.x_mean, fwd.x_var  # (*B, G, P, D_in)
    g, positions, d_in = x.shape[-3:]
    if per_example:  # contract over positions; the weights broadcast over the examples
        mu_s, wv_s = mu.unsqueeze(-3), wv.unsqueeze(-3)
    else:  # contract over examples and positions together
        mu_s, wv_s = mu, wv
        x = x.reshape(*x.shape[:-3], g * positions, d_in)
        xv = None if xv is None else xv.reshape(*xv.shape[:-3], g * positions, d_in)
        c = c.reshape(*c.shape[:-3], g * positions, c.shape[-1])
        a = a.reshape(*a.shape[:-3], g * positions, a.shape[-1])
    ew2 = wv + mu * mu

    # bound per input row of r = c (Var(x) E[w²] + E[x]² Var(w))
    c_max = c.amax(-1, keepdim=True)

    def by_row(t: Tensor) -> Tensor:  # (*lead, D_in) against (..., rows, D_in)
        return t.reshape(*t.shape[:-1], *([1] * (c_max.dim() - t.dim())), t.shape[-1])

    bound = x * x * c_max * by_row(wv.amax(-1))
    if xv is not None:
        bound = bound + xv * c_max * by_row(ew2.amax(-1))
    row_bound = bound.reshape(-1, d_in).amax(0)
    if not bool(torch.isfinite(row_bound).all()):
        return None
    budget = _term_budget(g * positions, mu.shape[-1], g if per_example else 1)
    order_max = _affordable_order(budget, deterministic=xv is None)
    if order_max < 0:
        return None
    limit = min(SERIES_MAX_RATIO, tol ** (1.0 / (order_max + 1)))
    exact = row_bound > limit
    n_exact = int(exact.sum())
    if n_exact > SERIES_EXACT_ROWS * d_in:
        return None
    rows = torch.nonzero(~exact)[:, 0]
    u = float(row_bound[rows].max()) if rows.numel() else 0.0
    order = _series_order(u, tol)

    def take_rows(t: Tensor | None, axis: int, index: Tensor) -> Tensor | None:
        return None if t is None else t.index_select(axis, index)

    w_shape = (*torch.broadcast_shapes(c.shape[:-2], mu_s.shape[:-2]), d_in, mu.shape[-1])
    if not per_example:
        w_shape = mu.shape
    tau_w, rho_w = mu.new_zeros(w_shape), mu.new_zeros(w_shape)
    m_x = None
    if with_input:
        shape = (*torch.broadcast_shapes(fwd.x_mean.shape[:-1], m_back.shape[:-1]), d_in)
        m_x = NatGaussian(x.new_zeros(shape), x.new_zeros(shape))
    if rows.numel():
        weights, inputs = _series(
            take_rows(x, -1, rows),
            take_rows(xv, -1, rows),
            take_rows(mu_s, -2, rows),
            take_rows(wv_s, -2, rows),
            c,
            a,
            order,
            with_input,
        )
        tau_w.index_copy_(-2, rows, weights.tau.expand(*w_shape[:-2], -1, -1))
        rho_w.index_copy_(-2, rows, weights.rho.expand(*w_shape[:-2], -1, -1))
        if with_input:
            m_x.put_(-1, rows, inputs.reshape(*m_x.shape[:-1], rows.numel()))
    if n_exact:
        idx = torch.nonzero(exact)[:, 0]
        part = LinearForward(
            take_rows(fwd.x_mean, -1, idx),
            take_rows(fwd.x_var, -1, idx),
            take_rows(fwd.w_mean, -2, idx),
            take_rows(fwd.w_var, -2, idx),
            fwd.b_mean,
            fwd.b_var,
            fwd.out_mean,
            fwd.out_var,
        )
        terms = term_messages(part, m_back)
        w_part = to_weight(part, terms, reduce_examples=not per_example)
        if not per_example:
            w_part = w_part.take(-3, 0)
        tau_w.index_copy_(-2, idx, w_part.tau.expand(*w_shape[:-2], -1, -1))
        rho_w.index_copy_(-2, idx, w_part.rho.expand(*w_shape[:-2], -1, -1))
        if with_input:
            m_x.put_(-1, idx, to_input(part, terms))
    result = GroupMessages(NatGaussian(tau_w, rho_w), m_x, order)
    if not result.to_weight.is_finite() or (m_x is not None and not m_x.is_finite()):
        return None
    return result


def _series(
    x: Tensor,
    xv: Tensor | None,
    mu: Tensor,
    wv: Tensor,
    c: Tensor,
    a: Tensor,
    order: int,
    with_input: bool,
) -> tuple[NatGaussian, NatGaussian | None]:
    """The truncated series of :func:`group_backward` for the given input rows.

    The sums run over the second-to-last axis (``N``): the examples of the group, or the
    positions of one example.

    Args:
        x: Input means ``(..., N, R)`` of the rows.
        xv: Input variances ``(..., N, R)``, or ``None`` for a deterministic input.
        mu: Weight means of the rows ``(..., R, D_out)``.
        wv: Weight variances of the rows.
        c: ``ρ_b / (1 + ρ_b σ²_s)``, ``(..., N, D_out)``.
        a: ``(τ_b − ρ_b μ_s) / (1 + ρ_b σ²_s)``, same shape.
        order: Order ``K``.
        with_input: Also return the messages to the inputs.

    Returns:
        The messages to the rows' weights summed over ``N``, ``(..., R, D_out)``, and the
        messages to the rows' inputs ``(..., N, R)`` or ``None``.
    """

    def t(m: Tensor) -> Tensor:
        return m.transpose(-1, -2)

    x2 = x * x
    ew2 = wv + mu * mu
    degrees = 1 if xv is None else order + 1  # powers m of Var(x) that occur
    c_pow = [torch.ones_like(c)]
    for _ in range(order + 1):
        c_pow.append(c_pow[-1] * c)  # c^0 … c^(K+1)
    x2_pow = [torch.ones_like(x2)]
    for _ in range(order):
        x2_pow.append(x2_pow[-1] * x2)
    xv_pow = [None if xv is None else torch.ones_like(xv)]
    for _ in range(degrees - 1):
        xv_pow.append(xv_pow[-1] * xv)
    ex2 = x2 if xv is None else xv + x2

    def x_mono(m: int, j: int) -> Tensor:
        return x2_pow[j] if m == 0 else xv_pow[m] * x2_pow[j]

    # messages to the weights: Σ_{m,j} C(m+j, m) E[W²]^m Var(W)^j ⊙ (sums over examples),
    # accumulated by Horner's rule in Var(W) (inner) and E[W²] (outer)
    acc = None
    for m in reversed(range(degrees)):
        inner = None
        for j in reversed(range(order - m + 1)):
            k, mono = m + j, x_mono(m, j)
            coef = float(math.comb(k, m))
            parts = (
                t(ex2 * mono) @ c_pow[k + 1],  # ρ
                t(x * mono) @ (a * c_pow[k]),  # τ, innovation part
                t(x2 * mono) @ c_pow[k + 1],  # τ, part multiplied by μ
            )
            if inner is None:
                inner = [p * coef for p in parts]
            else:
                inner = [i.mul_(wv).add_(p, alpha=coef) for i, p in zip(inner, parts, strict=True)]
        acc = (
            inner
            if acc is None
            else [a_.mul_(ew2).add_(i) for a_, i in zip(acc, inner, strict=True)]
        )
    to_weight = NatGaussian(acc[1] + mu * acc[2], acc[0])

    # messages to the inputs: Σ_{m,j} C(m+j, m) Var(x)^m (E[x]²)^j ⊙ (sums over units)
    if not with_input:
        return to_weight, None
    rho_x = tau_x = None
    w_mono = {(0, 0): torch.ones_like(wv)}  # E[W²]^m Var(W)^j
    for k in range(order + 1):
        for m in range(k + 1):
            j = k - m
            if (m, j) not in w_mono:
                w_mono[m, j] = w_mono[m - 1, j] * ew2 if m else w_mono[0, j - 1] * wv
            base = w_mono[m, j]
            ew2_mono = base * ew2
            coef = float(math.comb(k, m)) * x_mono(m, j)
            r_part = c_pow[k + 1] @ t(ew2_mono)
            t_part = (a * c_pow[k]) @ t(mu * base) + x * (c_pow[k + 1] @ t(ew2_mono - wv * base))
            rho_x = coef * r_part if rho_x is None else rho_x.add_(coef * r_part)
            tau_x = coef * t_part if tau_x is None else tau_x.add_(coef * t_part)
    return to_weight, NatGaussian(tau_x, rho_x)
