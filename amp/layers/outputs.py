"""Output layers: the likelihood factors at the end of the network.

Reference: the ``Argmax`` and regression output layers of ``lib/factor_graph.jl``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from amp import specs
from amp.factors import argmax, regression
from amp.gaussian import NatGaussian
from amp.layers.base import Group

__all__ = ["ArgmaxLayer", "RegressionLayer"]


class ArgmaxLayer:
    """Classification output: backward messages from the label, probabilities at prediction."""

    def __init__(self, spec: specs.Argmax):
        self.regularize = spec.regularize
        self._cache: NatGaussian | None = None

    def begin_batch(self, batch_size: int, num_groups: int) -> None:
        """Nothing to reset (the factor keeps no state that influences training)."""

    def forward(self, m_in: NatGaussian, group: Group) -> NatGaussian:
        """Remember the logits' forward messages, ``(*lead, G, K)``."""
        self._cache = m_in
        return m_in

    def backward(self, labels: Tensor, group: Group) -> NatGaussian:
        """Messages to the logits ``(*lead, G, K)`` given the labels ``(G,)`` or ``(*lead, G)``."""
        if self._cache is None:
            raise RuntimeError("backward must follow the forward pass of the same examples")
        out = argmax.to_logits(self._cache, labels, regularize=self.regularize)
        self._cache = None
        return out

    def predict(self, m_in: NatGaussian) -> Tensor:
        """Class probabilities ``(..., N, K)``."""
        return argmax.predict(m_in.mean, m_in.var)


class RegressionLayer:
    """Gaussian likelihood with fixed noise variance."""

    def __init__(self, spec: specs.Regression):
        self.noise_var = spec.noise_var
        self._shape: torch.Size | None = None

    def begin_batch(self, batch_size: int, num_groups: int) -> None:
        """Nothing to reset."""

    def forward(self, m_in: NatGaussian, group: Group) -> NatGaussian:
        """No-op during training (remembers the output shape)."""
        self._shape = m_in.shape
        return m_in

    def backward(self, y: Tensor, group: Group) -> NatGaussian:
        """Messages N(y, noise_var) to the outputs, ``(*lead, G, D)``."""
        return regression.to_output(y.expand(self._shape), self.noise_var)

    def predict(self, m_in: NatGaussian) -> tuple[Tensor, Tensor]:
        """Predictive mean and variance including the noise, each ``(..., N, D)``."""
        return regression.predict(m_in, self.noise_var)
