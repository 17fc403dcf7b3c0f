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

The functions do not care which: the caller passes the distributions to use. These are the
reference messages; :mod:`amp.factors.linear_series` evaluates the same backward messages of a
group faster when the weights are shared.

Reference: ``forward_mult`` / ``backward_mult`` in ``lib/messages_gaussian_mult.jl``.
"""

from __future__ import annotations

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
