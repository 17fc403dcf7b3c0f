"""Compiled path of the fully connected factor: exact backward messages in one fused kernel.

The reference messages of :mod:`amp.factors.linear` build the term messages
``(*B, G, P, D_in, D_out)`` as a tensor and then sum them over examples and positions (messages
to the weights) and over output units (messages to the inputs): about twenty passes over memory
of that size. :func:`group_backward` evaluates the same formulas, elementwise and exact (no
series, unlike :mod:`amp.factors.linear_series`), in a kernel compiled by ``torch.compile``
that computes each term in registers and accumulates it straight into the two reductions, so
the term tensor is never stored (:data:`RECOMPUTE_READS` keeps Inductor from storing parts of
it). The eager functions of :mod:`amp.factors.linear` stay the readable reference;
``tests/factors/test_linear_fused.py`` shows the two equal to rounding.

Compilation (:func:`amp.runtime.call_compiled`) needs a C++ compiler on the CPU (Triton on CUDA)
and takes seconds once per process and input rank; one kernel then serves every size. Where it
cannot compile, :func:`group_backward` returns ``None`` and the caller falls back to the series
or the eager evaluation.
"""

from __future__ import annotations

from torch import Tensor

from amp.factors.linear import LinearForward
from amp.factors.linear_series import GroupMessages
from amp.gaussian import NatGaussian
from amp.runtime import call_compiled, compile_options

__all__ = ["FUSED_ORDER", "RECOMPUTE_READS", "group_backward", "messages", "term_sums"]

FUSED_ORDER = -1
"""``GroupMessages.order`` of a fused evaluation: exact, no series."""

RECOMPUTE_READS = 1000
"""Inductor's ``realize_reads_threshold`` for the kernel: an intermediate read by more
consumers than this is stored rather than recomputed. With Inductor's default (4) the kernels of
hidden layers (Gaussian inputs) store two ``(G, D_in, D_out)`` intermediates, the terms'
denominators and natural means, and read them back; recomputing them in registers instead made
those kernels 5–13× faster (``mlp``, ``mlp5m``, real inputs, float32, 2 threads) and leaves the
first layer's kernel as it was."""


def term_sums(
    x: Tensor,
    x_var: Tensor | None,
    w_mean: Tensor,
    w_var: Tensor,
    out_mean: Tensor,
    out_var: Tensor,
    tau_b: Tensor,
    rho_b: Tensor,
    example_dims: int,
    with_input: bool,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """Term messages of the sum factors, summed over examples and over output units.

    The same arithmetic as :func:`amp.factors.linear.term_messages` followed by
    :func:`~amp.factors.linear.to_weight` and :func:`~amp.factors.linear.to_input`, written
    so that a compiler can fuse it: every ``(…, D_in, D_out)`` intermediate is consumed by the
    two sums.

    Args:
        x: Input means ``(*B, G, P, D_in)``.
        x_var: Input variances, same shape, or ``None`` (deterministic input).
        w_mean: Weight means ``(*W, D_in, D_out)``, broadcasting against ``(*B, G)``.
        w_var: Weight variances, same shape.
        out_mean: Forward means of the sums ``(*B, G, P, D_out)``.
        out_var: Forward variances of the sums.
        tau_b: Natural mean of the messages arriving at the sums, ``(*B, G, P, D_out)``.
        rho_b: Precision of those messages.
        example_dims: Trailing example/position axes of the terms to sum the weight messages
            over: 1 (positions, one message per example) or 2 (examples and positions).
        with_input: Also sum the messages to the inputs over the output units.

    Returns:
        ``(tau_w, rho_w, tau_x, rho_x)``: weight messages ``(*B, G, D_in, D_out)`` (one example
        axis summed) or ``(*B, D_in, D_out)`` (both), and input messages ``(*B, G, P, D_in)``
        or ``None``.
    """
    x_ = x.unsqueeze(-1)
    mu = w_mean.unsqueeze(-3)  # a position axis
    wv = w_var.unsqueeze(-3)
    ew2 = wv + mu * mu
    x2 = x_ * x_
    if x_var is None:
        term_var = x2 * wv
        ex2 = x2
    else:
        xv = x_var.unsqueeze(-1)
        term_var = xv * ew2 + x2 * wv
        ex2 = xv + x2
    rho_in = rho_b.unsqueeze(-2)
    den = 1.0 + rho_in * (out_var.unsqueeze(-2) - term_var).clamp_min(0.0)
    rho_z = rho_in / den
    tau_z = (tau_b.unsqueeze(-2) - rho_in * (out_mean.unsqueeze(-2) - x_ * mu)) / den
    dims = tuple(range(-2 - example_dims, -2))  # (P,) or (G, P) of (…, G, P, D_in, D_out)
    tau_w = (x_ * tau_z).sum(dims)
    rho_w = (ex2 * rho_z).sum(dims)
    if not with_input:
        return tau_w, rho_w, None, None
    return tau_w, rho_w, (mu * tau_z).sum(-1), (ew2 * rho_z).sum(-1)


@compile_options(realize_reads_threshold=RECOMPUTE_READS)
def messages(
    fwd: LinearForward, m_back: NatGaussian, *, with_input: bool, per_example: bool = False
) -> tuple[NatGaussian, NatGaussian | None]:
    """Weight and input messages of :func:`term_sums` as Gaussians (traceable, not compiled).

    Args:
        fwd: Forward pass of the group; weights ``(*lead, 1, D_in, D_out)`` shared by the group.
        m_back: Messages arriving at the sums, ``(*B, G, P, D_out)``.
        with_input: Also compute the messages to the inputs.
        per_example: Weight messages per example ``(*B, G, D_in, D_out)`` instead of their
            product over the group ``(*lead, D_in, D_out)``.

    Returns:
        The messages to the weights and to the inputs (``None`` unless ``with_input``).
    """
    tau_w, rho_w, tau_x, rho_x = term_sums(
        fwd.x_mean,
        fwd.x_var,
        fwd.w_mean,
        fwd.w_var,
        fwd.out_mean,
        fwd.out_var,
        m_back.tau,
        m_back.rho,
        1 if per_example else 2,
        with_input,
    )
    to_weight = NatGaussian(tau_w, rho_w)
    if not per_example:  # (*B, D_in, D_out) -> the weights' shape without the example axis
        to_weight = to_weight.sum_to(fwd.w_mean.squeeze(-3).shape)
    return to_weight, None if tau_x is None else NatGaussian(tau_x, rho_x)


def group_backward(
    fwd: LinearForward, m_back: NatGaussian, *, with_input: bool, per_example: bool = False
) -> GroupMessages | None:
    """Exact backward messages of a group of examples by one compiled kernel.

    Args:
        fwd: Forward pass of the group, inputs ``(*B, G, P, D_in)``, weights
            ``(*lead, 1, D_in, D_out)`` shared by the group.
        m_back: Messages arriving at the sums, ``(*B, G, P, D_out)``.
        with_input: Also compute the messages to the inputs (hidden layers).
        per_example: Return the weight messages per example (multiplied over the positions
            only), ``(*B, G, D_in, D_out)``, instead of their product over the group (the
            weights' shape without the example axis).

    Returns:
        The messages as :func:`amp.factors.linear_series.group_backward` returns them (with
        ``order`` :data:`FUSED_ORDER`), or ``None`` when the weights are not shared by the
        group or the kernel cannot be compiled here.
    """
    if fwd.w_mean.dim() < 3 or fwd.w_mean.shape[-3] != 1:
        return None
    result = call_compiled(messages, fwd, m_back, with_input=with_input, per_example=per_example)
    return None if result is None else GroupMessages(*result, FUSED_ORDER)
