"""2-D convolution (stride 1) as a product-sum factor per output pixel and channel (B.3.3, B.3.4).

The input is padded and unfolded into patches ``(..., P, J)`` with ``P`` output positions and
``J = C_in·k·k`` (the order of :func:`torch.nn.functional.unfold`); the kernel is stored as
``(J, C_out)``. Every output position is then one fully connected factor of
:mod:`amp.factors.linear` sharing the kernel, so the messages to the kernel and the bias multiply
over positions (weight sharing) and the messages to the patches fold back onto the pixels they
came from.

Padding is part of the factor: ``"zeros"`` pads with the constant 0; ``"symmetric"`` mirrors the
border including the edge pixel (the reference's ``NNlib.pad_symmetric``), so a padded pixel is a
copy of an interior one and its messages return to that pixel (:mod:`amp.padding`).

Reference: ``forward_conv_factor`` / ``backward_conv_factor`` / ``unfold_input`` in
``lib/message_equations.jl``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F  # noqa: N812
from torch import Tensor

from amp.factors import linear
from amp.gaussian import NatGaussian
from amp.padding import symmetric_index, symmetric_pad2d

__all__ = [
    "PADDING_MODES",
    "ConvForward",
    "fold_patches",
    "positions",
    "pad",
    "pad_adjoint",
    "symmetric_index",
    "term_messages",
    "to_bias",
    "to_input",
    "to_output",
    "to_weight",
]


PADDING_MODES = ("zeros", "symmetric")
"""Constant zeros, or a mirror of the border that includes the edge pixel."""


def _check_mode(mode: str) -> None:
    if mode not in PADDING_MODES:
        raise ValueError(f"invalid padding mode: {mode!r} (use 'zeros' or 'symmetric')")


def pad(t: Tensor, padding: int, mode: str) -> Tensor:
    """Pad the last two axes of ``(..., C, H, W)`` by ``padding`` pixels in the given mode."""
    _check_mode(mode)
    if padding == 0:
        return t
    if mode == "zeros":
        return F.pad(t, (padding, padding, padding, padding))
    return symmetric_pad2d(t, padding)


def pad_adjoint(t: Tensor, padding: int, mode: str) -> Tensor:
    """Transpose of :func:`pad`: sums the values at copies of a pixel back onto it."""
    _check_mode(mode)
    if padding == 0:
        return t
    if mode == "zeros":
        return t[..., padding:-padding, padding:-padding]
    h, w = t.shape[-2] - 2 * padding, t.shape[-1] - 2 * padding
    rows = symmetric_index(h, padding, t.device)
    cols = symmetric_index(w, padding, t.device)
    out = t.new_zeros(*t.shape[:-1], w).index_add_(-1, cols, t)
    return out.new_zeros(*t.shape[:-2], h, w).index_add_(-2, rows, out)


@dataclass(frozen=True)
class ConvForward:
    """Forward pass of a group: the per-position linear forward plus the geometry."""

    linear: linear.LinearForward
    in_shape: tuple[int, ...]
    out_hw: tuple[int, int]
    kernel_size: int
    padding: int
    mode: str

    def message(self) -> NatGaussian:
        """Forward message of the outputs, ``(..., C_out, H_out, W_out)``."""
        return _to_image(self.linear.message(), self.out_hw)


def _to_patches(t: Tensor, kernel_size: int) -> Tensor:
    """``(..., C, H, W)`` → patches ``(..., P, C·k·k)``."""
    lead = t.shape[:-3]
    patches = F.unfold(t.reshape(-1, *t.shape[-3:]), kernel_size).transpose(1, 2)
    return patches.reshape(*lead, *patches.shape[1:])


def _to_image(m: NatGaussian, out_hw: tuple[int, int]) -> NatGaussian:
    """``(..., P, C)`` → ``(..., C, H_out, W_out)``."""
    c = m.shape[-1]
    lead = m.shape[:-2]
    return NatGaussian(
        m.tau.transpose(-1, -2).reshape(*lead, c, *out_hw),
        m.rho.transpose(-1, -2).reshape(*lead, c, *out_hw),
    )


def _to_positions(m: NatGaussian) -> NatGaussian:
    """``(..., C, H, W)`` → ``(..., P, C)``."""
    return NatGaussian(m.tau.flatten(-2).transpose(-1, -2), m.rho.flatten(-2).transpose(-1, -2))


def to_output(
    x_mean: Tensor,
    x_var: Tensor | None,
    w: NatGaussian,
    b: NatGaussian,
    *,
    kernel_size: int,
    padding: int = 0,
    mode: str = "symmetric",
) -> ConvForward:
    """Forward moments of every output pixel (P1 per position).

    Args:
        x_mean: Input means (or deterministic inputs), ``(*B, C_in, H, W)``.
        x_var: Input variances, same shape; ``None`` for a deterministic input.
        w: Kernel distribution, ``(*W, C_in·k·k, C_out)`` (shapes as in ``linear.to_output``).
        b: Bias distribution, ``(*W, C_out)``.
        kernel_size: Kernel side ``k``.
        padding: Pixels added on each side.
        mode: ``"zeros"`` or ``"symmetric"``.

    Returns:
        The forward pass; :meth:`ConvForward.message` is ``(..., C_out, H_out, W_out)``.
    """
    h = x_mean.shape[-2] + 2 * padding - kernel_size + 1
    w_out = x_mean.shape[-1] + 2 * padding - kernel_size + 1
    patches_mean = _to_patches(pad(x_mean, padding, mode), kernel_size)
    patches_var = None if x_var is None else _to_patches(pad(x_var, padding, mode), kernel_size)
    fwd = linear.to_output(patches_mean, patches_var, w, b)
    return ConvForward(fwd, tuple(x_mean.shape), (h, w_out), kernel_size, padding, mode)


def term_messages(fwd: ConvForward, m_back: NatGaussian) -> NatGaussian:
    """Messages to every product term, ``(..., P, C_in·k·k, C_out)``.

    Args:
        fwd: Forward pass.
        m_back: Messages arriving at the outputs, ``(..., C_out, H_out, W_out)``.
    """
    return linear.term_messages(fwd.linear, _to_positions(m_back))


def to_weight(
    fwd: ConvForward, m_terms: NatGaussian, *, reduce_examples: bool = False
) -> NatGaussian:
    """Messages to the kernel, multiplied over positions: ``(..., J, C_out)`` or reduced."""
    return linear.to_weight(fwd.linear, m_terms, reduce_examples=reduce_examples)


def to_bias(fwd: ConvForward, m_back: NatGaussian, *, reduce_examples: bool = False) -> NatGaussian:
    """Messages to the bias, multiplied over positions: ``(..., C_out)`` or the bias's shape."""
    return linear.to_bias(fwd.linear, _to_positions(m_back), reduce_examples=reduce_examples)


def to_input(fwd: ConvForward, m_terms: NatGaussian) -> NatGaussian:
    """Variational messages to the input pixels, ``(..., C_in, H, W)`` (before any floor).

    The messages to the patch entries are summed onto the pixels they were copied from
    (``fold``), then the padding's copies are summed back onto their source pixels.
    """
    return fold_patches(fwd, linear.to_input(fwd.linear, m_terms))


def fold_patches(fwd: ConvForward, m_patches: NatGaussian) -> NatGaussian:
    """Messages to patch entries ``(..., P, C_in·k·k)`` summed onto the input pixels."""
    padded_hw = (fwd.in_shape[-2] + 2 * fwd.padding, fwd.in_shape[-1] + 2 * fwd.padding)
    lead = m_patches.shape[:-2]

    def back(t: Tensor) -> Tensor:
        flat = t.reshape(-1, *t.shape[-2:]).transpose(1, 2)  # (N, J, P)
        image = pad_adjoint(F.fold(flat, padded_hw, fwd.kernel_size), fwd.padding, fwd.mode)
        return image.reshape(*lead, *image.shape[1:])

    return NatGaussian(back(m_patches.tau), back(m_patches.rho))


def positions(m: NatGaussian) -> NatGaussian:
    """Messages on the output pixels ``(..., C, H, W)`` as ``(..., P, C)``."""
    return _to_positions(m)


def predict(
    x_mean: Tensor,
    x_var: Tensor | None,
    w: NatGaussian,
    b: NatGaussian,
    *,
    kernel_size: int,
    padding: int = 0,
    mode: str = "symmetric",
) -> NatGaussian:
    """Forward message for prediction, ``(..., C_out, H_out, W_out)``."""
    return to_output(
        x_mean, x_var, w, b, kernel_size=kernel_size, padding=padding, mode=mode
    ).message()
