"""Layers without weights between the weight layers: LeakyReLU, max pooling, flattening.

Reference: the activation and pooling layers of ``lib/factor_graph.jl``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from amp import specs
from amp.factors import leaky_relu, maxpool
from amp.gaussian import NatGaussian
from amp.layers.base import Group, Message
from amp.runtime import call_compiled

__all__ = ["FlattenLayer", "LeakyReLULayer", "MaxPoolLayer"]


class LeakyReLULayer:
    """LeakyReLU with EP messages; remembers each example's last backward message on ``z``.

    Args:
        spec: The layer spec (its leak).
        shape: Shape of one example's activations.
        lead: Leading dimensions of independent networks, ``()`` or ``(R,)``.
        dtype: Floating-point type of the messages.
        device: Device of the messages.
    """

    def __init__(
        self,
        spec: specs.LeakyReLU,
        shape: tuple[int, ...],
        *,
        lead: tuple[int, ...] = (),
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ):
        self.leak = spec.leak
        self.shape, self.lead, self.ex = shape, lead, len(lead)
        self.dtype, self.device = dtype, device
        self.m_back: NatGaussian | None = None  # (*lead, B, *shape)
        self.compiled = False  # evaluate the messages by compiled kernels (amp.runtime)
        self._cache: tuple[Group, NatGaussian] | None = None

    def begin_batch(self, batch_size: int, num_groups: int) -> None:
        """Forget the backward messages of the previous batch visit."""
        self.m_back = NatGaussian.uniform(
            (*self.lead, batch_size, *self.shape), dtype=self.dtype, device=self.device
        )

    def forward(self, m_in: NatGaussian, group: Group) -> NatGaussian:
        """EP forward message, using the example's backward message of the last iteration."""
        self._cache = (group, m_in)
        return self._message(leaky_relu.to_output, m_in, self.m_back.take(self.ex, group.idx))

    def backward(self, m_back: NatGaussian, group: Group) -> NatGaussian:
        """EP backward message (floored at precision 1e-8); remembers ``m_back``."""
        if self._cache is None or self._cache[0] is not group:
            raise RuntimeError("backward must follow the forward pass of the same examples")
        m_in = self._cache[1]
        self.m_back.put_(self.ex, group.idx, m_back)
        self._cache = None
        return self._message(leaky_relu.to_input, m_in, m_back).floor_precision()

    def _message(
        self,
        fn: Callable[[NatGaussian, NatGaussian, float], NatGaussian],
        m_in: NatGaussian,
        m_back: NatGaussian,
    ) -> NatGaussian:
        """``fn(m_in, m_back, leak)``, by its compiled kernel when the layer is compiled."""
        out = call_compiled(fn, m_in, m_back, self.leak) if self.compiled else None
        return out if out is not None else fn(m_in, m_back, self.leak)

    def predict(self, m_in: NatGaussian) -> NatGaussian:
        """Forward-only moment matching."""
        return leaky_relu.predict(m_in, self.leak)


class MaxPoolLayer:
    """Soft-argmax-weighted pooling; stateless apart from the group's forward pass."""

    def __init__(self, spec: specs.MaxPool2d):
        self.kernel_size = spec.kernel_size
        self._cache: maxpool.PoolForward | None = None

    def begin_batch(self, batch_size: int, num_groups: int) -> None:
        """Nothing to reset."""

    def forward(self, m_in: NatGaussian, group: Group) -> NatGaussian:
        """Pooled forward messages, ``(..., C, H // k, W // k)``."""
        self._cache = maxpool.to_output(m_in, self.kernel_size)
        return self._cache.message()

    def backward(self, m_back: NatGaussian, group: Group) -> NatGaussian:
        """Messages to the pooled inputs, ``(..., C, H, W)``."""
        if self._cache is None:
            raise RuntimeError("backward must follow the forward pass of the same examples")
        out, self._cache = maxpool.to_input(self._cache, m_back), None
        return out

    def predict(self, m_in: NatGaussian) -> NatGaussian:
        """Pooled forward messages."""
        return maxpool.predict(m_in, self.kernel_size)


class FlattenLayer:
    """Reshape ``(..., C, H, W)`` to ``(..., C·H·W)`` and back."""

    def __init__(self, in_shape: tuple[int, ...]):
        self.in_shape = in_shape

    def begin_batch(self, batch_size: int, num_groups: int) -> None:
        """Nothing to reset."""

    def _flat(self, m: Message) -> Message:
        if isinstance(m, NatGaussian):
            return NatGaussian(self._flat(m.tau), self._flat(m.rho))
        return m.reshape(*m.shape[: m.dim() - len(self.in_shape)], -1)

    def forward(self, m_in: Message, group: Group) -> Message:
        """Flattened messages (or data)."""
        return self._flat(m_in)

    def backward(self, m_back: NatGaussian | None, group: Group) -> NatGaussian | None:
        """Messages reshaped to the input shape (``None`` before the first weight layer)."""
        if m_back is None:
            return None
        return m_back.reshape(*m_back.shape[:-1], *self.in_shape)

    def predict(self, m_in: Message) -> Message:
        """Flattened messages (or data)."""
        return self._flat(m_in)
