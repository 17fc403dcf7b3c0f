"""Gaussian regression likelihood ``y ~ N(f, noise_var)`` with a fixed noise variance (B.3.9).

Reference: ``RegressionFactor`` in ``lib/factor_graph.jl``.
"""

from __future__ import annotations

from torch import Tensor

from amp.gaussian import NatGaussian

__all__ = ["predict", "to_output"]


def to_output(y: Tensor, noise_var: float) -> NatGaussian:
    """Backward message to the network output: N(y, noise_var).

    Args:
        y: Targets, ``(..., D)``.
        noise_var: Observation noise variance β².

    Returns:
        Messages to the outputs, ``(..., D)``.
    """
    rho = y.new_full(y.shape, 1.0 / noise_var)
    return NatGaussian(y * rho, rho)


def predict(m_out: NatGaussian, noise_var: float) -> tuple[Tensor, Tensor]:
    """Predictive mean and variance of ``y``: the output's moments plus the noise variance."""
    return m_out.mean, m_out.var + noise_var
