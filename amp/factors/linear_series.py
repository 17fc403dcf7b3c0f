"""Fast path of the fully connected factor: backward messages of a group by a geometric series.

The reference messages of :mod:`amp.factors.linear` build one term message per example, position,
input and output unit, ``(G, P, D_in, D_out)``. When the weights are shared by the group (hidden
layers, and every layer of the ``scaled`` schedule), :func:`group_backward` expands the
denominator of those messages in a geometric series and evaluates every sum over examples,
positions and output units by matrix products of monomials of the moments, without the
per-term tensor. The truncation error is bounded per dtype (:data:`SERIES_TOLERANCE`); input
rows whose ratio is too large go to the exact elementwise evaluation, and the whole layer does
when the series would cost more (:data:`SERIES_COST`). The result agrees with the reference to
1e-10 in float64 (``tests/factors/test_linear_series.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from amp.factors.linear import LinearForward, term_messages, to_input, to_weight
from amp.gaussian import NatGaussian

__all__ = [
    "SERIES_COST",
    "SERIES_EXACT_ROWS",
    "SERIES_MAX_RATIO",
    "SERIES_TOLERANCE",
    "GroupMessages",
    "group_backward",
]

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
