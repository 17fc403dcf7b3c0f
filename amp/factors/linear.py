"""Fully connected product-sum factor ``s_{p,j} = Σ_i x_{p,i} W_{i,j} + b_j``.

One factor per output unit ``j`` and position ``p``: a fully connected layer has one position
(``P = 1``); a convolution (:mod:`amp.factors.conv2d`) has one per output pixel, all sharing the
kernel ``W`` (weight sharing). Tensors carry a leading dimension ``G`` of examples.

Which distribution of the weights enters depends on the layer (spec B.4):

* first weight layer (deterministic input ``x``): per-example **cavities** ``q_W / m_W[n]`` of the
  weights and the bias; the messages are exact EP messages (B.3.1, B.3.3);
* hidden layers (Gaussian input): the **marginal** ``q_W`` of the weights and the bias cavity; the
  messages to weights and inputs are variational product messages (B.3.2, B.3.4).

The functions do not care which: the caller passes the distributions to use.

Reference: ``forward_mult`` / ``backward_mult`` in ``lib/messages_gaussian_mult.jl``.
"""

from __future__ import annotations

from dataclasses import dataclass

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
        x_mean: Input means, ``(G, P, D_in)``.
        x_var: Input variances, ``(G, P, D_in)``; ``None`` for a deterministic input.
        w_mean: Weight means, ``(D_in, D_out)`` (shared) or ``(G, D_in, D_out)`` (per example).
        w_var: Weight variances, same shape as ``w_mean``.
        b_mean: Bias means, ``(D_out,)`` or ``(G, D_out)``.
        b_var: Bias variances, same shape as ``b_mean``.
        out_mean: Means of the sums ``s``, ``(G, P, D_out)``.
        out_var: Variances of the sums, ``(G, P, D_out)``.
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
        """Second moments ``E[x²]`` of the inputs, ``(G, P, D_in)``."""
        if self.x_var is None:
            return self.x_mean * self.x_mean
        return self.x_var + self.x_mean * self.x_mean

    def message(self) -> NatGaussian:
        """Forward message of the sums, N(out_mean, out_var), ``(G, P, D_out)``."""
        return NatGaussian.from_moments(self.out_mean, self.out_var)


def _by_position(t: Tensor, per_example_dims: int) -> Tensor:
    """Insert a position axis after the example axis of a per-example weight or bias tensor."""
    return t.unsqueeze(1) if t.dim() == per_example_dims else t


def to_output(
    x_mean: Tensor, x_var: Tensor | None, w: NatGaussian, b: NatGaussian
) -> LinearForward:
    """Forward moments of the sums (P1): the message to ``s``.

        μ_s = Σ_i E[x_i] μ_W,ij + μ_b,j,    σ²_s = Σ_i Var(x_i W_ij) + σ²_b,j.

    Args:
        x_mean: Input means (or the deterministic inputs), ``(G, P, D_in)``.
        x_var: Input variances, ``(G, P, D_in)``; ``None`` for a deterministic input.
        w: Weight distribution, ``(D_in, D_out)`` or per example ``(G, D_in, D_out)``.
        b: Bias distribution, ``(D_out,)`` or per example ``(G, D_out)``.

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
    out_mean = out_mean + _by_position(b_mean, 2)
    out_var = out_var + _by_position(b_var, 2)
    return LinearForward(x_mean, x_var, w_mean, w_var, b_mean, b_var, out_mean, out_var)


def term_messages(fwd: LinearForward, m_back: NatGaussian) -> NatGaussian:
    """Messages from every sum factor to every product term ``z_{p,i,j} = x_{p,i} W_{i,j}`` (P2).

    Args:
        fwd: Forward pass of the same examples.
        m_back: Messages arriving at the sums, ``(G, P, D_out)``.

    Returns:
        Messages to the terms, ``(G, P, D_in, D_out)``.
    """
    w_mean = _by_position(fwd.w_mean, 3)
    w_var = _by_position(fwd.w_var, 3)
    x_var = None if fwd.x_var is None else fwd.x_var.unsqueeze(-1)
    x_mean = fwd.x_mean.unsqueeze(-1)
    if x_var is None:
        term_mean, term_var = x_mean * w_mean, x_mean * x_mean * w_var
    else:
        term_mean, term_var = product_moments(x_mean, x_var, w_mean, w_var)
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
        m_terms: Output of :func:`term_messages`, ``(G, P, D_in, D_out)``.
        reduce_examples: Return the product over the examples of the group instead of one
            message per example.

    Returns:
        ``(G, D_in, D_out)``, or ``(D_in, D_out)`` when ``reduce_examples``.
    """
    msg = product_to_factor(m_terms, fwd.x_mean.unsqueeze(-1), fwd.x_m2.unsqueeze(-1))
    return msg.sum((0, 1)) if reduce_examples else msg.sum(1)


def to_input(fwd: LinearForward, m_terms: NatGaussian) -> NatGaussian:
    """Variational messages to the inputs: ``τ = Σ_j μ_W,ij τ_z,pij``, ``ρ = Σ_j E[W_ij²] ρ_z,pij``.

    Args:
        fwd: Forward pass with Gaussian inputs.
        m_terms: Output of :func:`term_messages`, ``(G, P, D_in, D_out)``.

    Returns:
        Messages to the inputs, ``(G, P, D_in)`` (before any precision floor).
    """
    w_mean = _by_position(fwd.w_mean, 3)
    w_m2 = w_mean * w_mean + _by_position(fwd.w_var, 3)
    return product_to_factor(m_terms, w_mean, w_m2).sum(-1)


def to_bias(
    fwd: LinearForward, m_back: NatGaussian, *, reduce_examples: bool = False
) -> NatGaussian:
    """Exact messages to the biases (P2 with coefficient 1), multiplied over positions.

    Args:
        fwd: Forward pass.
        m_back: Messages arriving at the sums, ``(G, P, D_out)``.
        reduce_examples: Return the product over the group's examples.

    Returns:
        ``(G, D_out)``, or ``(D_out,)`` when ``reduce_examples``.
    """
    msg = sum_to_term(
        _by_position(fwd.b_mean, 2), _by_position(fwd.b_var, 2), fwd.out_mean, fwd.out_var, m_back
    )
    return msg.sum((0, 1)) if reduce_examples else msg.sum(1)


def predict(x_mean: Tensor, x_var: Tensor | None, w: NatGaussian, b: NatGaussian) -> NatGaussian:
    """Forward message for prediction: :func:`to_output` with the marginals, as a message."""
    return to_output(x_mean, x_var, w, b).message()
