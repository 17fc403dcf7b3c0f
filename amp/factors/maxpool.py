"""Max pooling as a soft-argmax-weighted sum of the window's inputs (spec B.3.6).

Every ``k×k`` window (stride ``k``, incomplete windows dropped) with incoming forward messages
``x_1 … x_K`` gets weights ``p = argmax.predict(x_1 … x_K)``, treated as constants, and the output
``Σ_j p_j x_j``. The backward messages are the exact sum-factor messages for these coefficients
(P2). Pixels outside complete windows receive uniform messages. The factor keeps no state.

Reference: ``forward_max_pool_factor`` / ``backward_max_pool_factor`` in
``lib/message_equations.jl``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F  # noqa: N812
from torch import Tensor

from amp.factors import argmax
from amp.factors.product_sum import sum_to_term
from amp.gaussian import NatGaussian

__all__ = ["PoolForward", "predict", "to_input", "to_output"]


@dataclass(frozen=True)
class PoolForward:
    """Forward pass of a group: window moments ``(..., C, Ho, Wo, K)`` and weights ``p``."""

    in_shape: tuple[int, ...]
    kernel_size: int
    x_mean: Tensor
    x_var: Tensor
    weights: Tensor
    out_mean: Tensor
    out_var: Tensor

    def message(self) -> NatGaussian:
        """Forward message of the pooled outputs, ``(..., C, Ho, Wo)``."""
        return NatGaussian.from_moments(self.out_mean, self.out_var)


def _windows(t: Tensor, k: int) -> Tensor:
    """``(..., C, H, W)`` → ``(..., C, H // k, W // k, k·k)`` of non-overlapping windows."""
    *lead, c, h, w = t.shape
    t = t[..., : (h // k) * k, : (w // k) * k]
    t = t.reshape(*lead, c, h // k, k, w // k, k).transpose(-3, -2)
    return t.reshape(*lead, c, h // k, w // k, k * k)


def _unwindows(t: Tensor, k: int, in_shape: tuple[int, ...]) -> Tensor:
    """Inverse of :func:`_windows`; cropped pixels get zeros."""
    *lead, c, ho, wo, _ = t.shape
    t = t.reshape(*lead, c, ho, wo, k, k).transpose(-3, -2).reshape(*lead, c, ho * k, wo * k)
    h, w = in_shape[-2:]
    return F.pad(t, (0, w - wo * k, 0, h - ho * k))


def to_output(m_in: NatGaussian, kernel_size: int) -> PoolForward:
    """Forward message of the pooled outputs.

    Args:
        m_in: Forward messages of the inputs, ``(..., C, H, W)``, proper with finite variance.
        kernel_size: Window side ``k``.

    Returns:
        The forward pass (its :meth:`PoolForward.message` is the output message).
    """
    x_mean = _windows(m_in.mean, kernel_size)
    x_var = _windows(m_in.var, kernel_size)
    weights = argmax.predict(x_mean, x_var)
    out_mean = (weights * x_mean).sum(-1)
    out_var = (weights * weights * x_var).sum(-1)
    return PoolForward(tuple(m_in.shape), kernel_size, x_mean, x_var, weights, out_mean, out_var)


def to_input(fwd: PoolForward, m_back: NatGaussian) -> NatGaussian:
    """Backward messages to the inputs: P2 with the deterministic coefficients ``p_j``.

    Args:
        fwd: Forward pass of the same examples.
        m_back: Messages arriving at the pooled outputs, ``(..., C, Ho, Wo)``.

    Returns:
        Messages to the inputs, ``(..., C, H, W)``.
    """
    p = fwd.weights
    m_term = sum_to_term(
        p * fwd.x_mean,
        p * p * fwd.x_var,
        fwd.out_mean.unsqueeze(-1),
        fwd.out_var.unsqueeze(-1),
        NatGaussian(m_back.tau.unsqueeze(-1), m_back.rho.unsqueeze(-1)),
    )
    k = fwd.kernel_size
    return NatGaussian(
        _unwindows(p * m_term.tau, k, fwd.in_shape),
        _unwindows(p * p * m_term.rho, k, fwd.in_shape),
    )


def predict(m_in: NatGaussian, kernel_size: int) -> NatGaussian:
    """Forward message for prediction (same as training: the factor has no state)."""
    return to_output(m_in, kernel_size).message()
