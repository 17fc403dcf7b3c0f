"""Prior distributions of weights and biases (spec D).

* Prior **means** are random, ``N(0, σ_l²)`` with ``σ_l = (1/√d_in)·min(1, √(d_out/d_in))``: the
  "spectral parametrisation" of Yang, Simon and Bernstein (arXiv:2310.17813), which breaks the
  symmetry between units.
* Prior **variances** are the same for all weights of a layer and aim at pre-activation
  variance :data:`TARGET_PREACTIVATION_VAR`: ``1.5 / d_in`` for the first weight layer, and
  ``(1.5 − b·min(1, d_out/d_in)) / (a·d_in + b)`` for every layer whose input comes through a
  LeakyReLU(0.1).
* Biases: ``N(0, 0.5)``.

For a convolution ``d_in = k·k·C_in`` and ``d_out = C_out·H_out·W_out``.

Reference: ``create_weight_prior``, ``create_weight_prior_conv2d``, ``create_bias_prior`` in
``lib/factor_graph.jl``; the constants are derived in ``priors_test.jl``.
"""

from __future__ import annotations

import math

import torch

from amp.gaussian import NatGaussian

__all__ = [
    "BIAS_PRIOR_VAR",
    "POST_LEAKY_A",
    "POST_LEAKY_B",
    "TARGET_PREACTIVATION_VAR",
    "bias_prior",
    "prior_mean_std",
    "weight_prior",
    "weight_prior_var",
]

TARGET_PREACTIVATION_VAR = 1.5
"""Pre-activation variance the weight priors aim at."""

POST_LEAKY_A = 0.44958619556324186
"""``a = σ²_μx (1 + μ_μx²)``: spread of the means of LeakyReLU(0.1) outputs for pre-activations
with ``μ ~ N(0, 1)`` and ``σ² = 2`` under forward moment matching (``priors_test.jl``)."""

POST_LEAKY_B = 0.8040586726631379
"""``b = σ²_x``: mean variance of the same LeakyReLU(0.1) outputs (``priors_test.jl``)."""

BIAS_PRIOR_VAR = 0.5
"""Variance of the zero-mean bias prior of every layer."""


def prior_mean_std(d_in: int, d_out: int) -> float:
    """Standard deviation ``σ_l`` of the random prior means of a layer."""
    return (1.0 / math.sqrt(d_in)) * min(1.0, math.sqrt(d_out / d_in))


def weight_prior_var(d_in: int, d_out: int, *, post_leaky: bool) -> float:
    """Prior variance of every weight of a layer.

    Args:
        d_in: Fan-in (``k·k·C_in`` for a convolution).
        d_out: Fan-out (``C_out·H_out·W_out`` for a convolution).
        post_leaky: Whether the layer's input comes through a LeakyReLU (every weight layer but
            the first).

    Returns:
        The variance ``σ_p²``.
    """
    if not post_leaky:
        return TARGET_PREACTIVATION_VAR / d_in
    numerator = TARGET_PREACTIVATION_VAR - POST_LEAKY_B * min(1.0, d_out / d_in)
    return numerator / (POST_LEAKY_A * d_in + POST_LEAKY_B)


def weight_prior(
    shape: tuple[int, ...],
    d_in: int,
    d_out: int,
    *,
    post_leaky: bool,
    generator: torch.Generator,
    prior_var: float | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> NatGaussian:
    """Draw the prior of a weight tensor: random means, a shared variance.

    Args:
        shape: Shape of the weight tensor.
        d_in: Fan-in.
        d_out: Fan-out.
        post_leaky: See :func:`weight_prior_var`.
        generator: Source of the random prior means (CPU generator).
        prior_var: Explicit variance overriding the formula.
        dtype: Floating-point type.
        device: Device of the result.

    Returns:
        The prior as a Gaussian tensor of the given shape.
    """
    var = (
        prior_var if prior_var is not None else weight_prior_var(d_in, d_out, post_leaky=post_leaky)
    )
    if var <= 0:
        raise ValueError(
            f"prior variance {var!r} of a {d_in}→{d_out} layer is not positive; "
            "set an explicit prior_var for this layer"
        )
    mean = torch.randn(shape, generator=generator, dtype=torch.float64)
    mean = (mean * prior_mean_std(d_in, d_out)).to(dtype=dtype, device=device)
    return NatGaussian.from_moments(mean, torch.full_like(mean, var))


def bias_prior(
    d_out: int, *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> NatGaussian:
    """The bias prior N(0, :data:`BIAS_PRIOR_VAR`) of a layer with ``d_out`` outputs."""
    mean = torch.zeros(d_out, dtype=dtype, device=device)
    return NatGaussian.from_moments(mean, torch.full_like(mean, BIAS_PRIOR_VAR))
