"""Stateful layers: the bookkeeping around the pure message functions of :mod:`amp.factors`.

Every layer implements the same small interface (the reference's implicit one made explicit):

* ``begin_batch(batch_size)`` — reset the per-example state of a batch visit;
* ``forward(m_in, group)`` — forward messages of a :class:`Group` of examples of the batch;
* ``backward(m_back, group)`` — backward messages of the same examples; weight layers update
  their marginals here, so the next group of examples sees the update;
* ``predict(m_in)`` — forward-only pass on the prediction branch, using the marginals.

Weight layers (:class:`WeightLayer`) hold the marginal ``q`` of their weights and biases and the
messages of the examples of the current batch visit. They start a visit from the cavity the
trainer hands them (prior × messages of all other batches), so ``q = cavity × Π_n m_n`` holds at
all times; :meth:`WeightLayer.end_iteration` recomputes it exactly.

Reference: the layer types of ``lib/factor_graph.jl``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from amp import specs
from amp.factors import argmax, conv2d, leaky_relu, linear, maxpool, regression
from amp.gaussian import NatGaussian

__all__ = [
    "ArgmaxLayer",
    "FlattenLayer",
    "Group",
    "Layer",
    "LeakyReLULayer",
    "MaxPoolLayer",
    "RegressionLayer",
    "WeightLayer",
]

Message = NatGaussian | Tensor


@dataclass(frozen=True)
class Group:
    """A group of examples whose messages are computed together.

    Attributes:
        idx: Positions of the examples within the current batch, ``(G,)``.
        index: Number of the group within the batch visit (the same in every iteration).
    """

    idx: Tensor
    index: int


class Layer(Protocol):
    """Interface shared by all layers."""

    def begin_batch(self, batch_size: int, num_groups: int) -> None:
        """Reset the per-example state for a batch visit of ``batch_size`` examples."""

    def forward(self, m_in: Message, group: Group) -> Message:
        """Forward messages of the examples of ``group``."""

    def backward(self, m_back: Message, group: Group) -> NatGaussian | None:
        """Backward messages of the same examples (``None`` where no input message exists)."""

    def predict(self, m_in: Message) -> Message:
        """Forward-only prediction with the current marginals."""


def _put(store: NatGaussian, idx: Tensor, value: NatGaussian) -> None:
    store.tau[idx] = value.tau
    store.rho[idx] = value.rho


def _add_(target: NatGaussian, delta: NatGaussian, alpha: float = 1.0) -> None:
    target.tau.add_(delta.tau, alpha=alpha)
    target.rho.add_(delta.rho, alpha=alpha)


class WeightLayer:
    """A fully connected or convolutional layer with Gaussian weights and biases.

    The messages of one batch visit are kept per *site* so that a later iteration can replace
    them: the first layer needs each example's own weight message (its cavity excludes it);
    hidden layers use the full weight marginal, so only the product of a group's messages is
    needed (the groups are the same in every iteration). Bias messages are kept per example
    (every layer uses bias cavities). With a single iteration per visit nothing is kept: the
    messages are absorbed into the marginal directly.

    Args:
        spec: The layer spec.
        in_shape: Input shape of one example.
        prior_w: Prior of the weights, ``(D_in, D_out)`` (kernel ``(C_in·k·k, C_out)``).
        prior_b: Prior of the biases, ``(D_out,)``.
        first: Whether this is the first weight layer (deterministic input, exact EP with
            per-example cavities) or a hidden one (Gaussian input, weight marginals, variational
            product messages).
    """

    def __init__(
        self,
        spec: specs.Linear | specs.Conv2d,
        in_shape: tuple[int, ...],
        prior_w: NatGaussian,
        prior_b: NatGaussian,
        *,
        first: bool,
    ) -> None:
        self.spec = spec
        self.in_shape = in_shape
        self.first = first
        self.is_conv = isinstance(spec, specs.Conv2d)
        self.prior_w, self.prior_b = prior_w, prior_b
        self.q_w, self.q_b = prior_w.clone(), prior_b.clone()
        # state of the current batch visit
        self.cavity_w, self.cavity_b = prior_w, prior_b
        self.total_w = self._uniform(prior_w.shape)
        self.total_b = self._uniform(prior_b.shape)
        self.msg_w: NatGaussian | None = None  # (sites, *w_shape)
        self.msg_b: NatGaussian | None = None  # (examples, D_out)
        self.m_toin: NatGaussian | None = None  # (examples, *in_shape), hidden layers
        self._keep_messages = False
        self._own_messages_zero = True
        self._cache: tuple[Group, linear.LinearForward | conv2d.ConvForward] | None = None

    @property
    def dtype(self) -> torch.dtype:
        """Floating-point type of the marginals."""
        return self.prior_w.dtype

    @property
    def device(self) -> torch.device:
        """Device of the marginals."""
        return self.prior_w.device

    def _uniform(self, shape: tuple[int, ...] | torch.Size) -> NatGaussian:
        return NatGaussian.uniform(tuple(shape), dtype=self.dtype, device=self.device)

    # ------------------------------------------------------------------------- batch visits
    def begin_visit(
        self, cavity_w: NatGaussian, cavity_b: NatGaussian, *, keep_messages: bool
    ) -> None:
        """Start a batch visit from the batch's cavity.

        Args:
            cavity_w: Prior × messages of all other batches, for the weights.
            cavity_b: The same for the biases.
            keep_messages: Keep the visit's messages per site so that later iterations can
                replace them (needed when a batch is swept more than once).
        """
        self.cavity_w, self.cavity_b = cavity_w, cavity_b
        self.q_w, self.q_b = cavity_w.clone(), cavity_b.clone()
        self.total_w = self._uniform(cavity_w.shape)
        self.total_b = self._uniform(cavity_b.shape)
        self._keep_messages = keep_messages
        self._own_messages_zero = True

    def begin_batch(self, batch_size: int, num_groups: int) -> None:
        """Reset the per-site messages (to weights, biases and inputs) to uniform."""
        self.msg_w = self.msg_b = None
        if self._keep_messages:
            sites = batch_size if self.first else num_groups
            self.msg_w = self._uniform((sites, *self.prior_w.shape))
            self.msg_b = self._uniform((batch_size, *self.prior_b.shape))
        if not self.first:
            self.m_toin = self._uniform((batch_size, *self.in_shape))

    def end_iteration(self) -> None:
        """Recompute the marginals exactly as cavity × product of this visit's messages."""
        if self.msg_w is not None and self.msg_b is not None:
            self.total_w = self.msg_w.sum(0)
            self.total_b = self.msg_b.sum(0)
            self._own_messages_zero = False
        self.q_w = self.cavity_w.mul(self.total_w)
        self.q_b = self.cavity_b.mul(self.total_b)

    def visit_messages(self) -> tuple[NatGaussian, NatGaussian]:
        """Product of the visit's messages: the new batch message (weights, biases)."""
        return self.total_w, self.total_b

    # -------------------------------------------------------------------------- messages
    def _distributions(self, group: Group) -> tuple[NatGaussian, NatGaussian]:
        """Weight and bias distributions the examples of ``group`` use in the forward pass."""
        if self._own_messages_zero or self.msg_b is None:
            return self.q_w, self.q_b
        bias = self.q_b.div(self.msg_b[group.idx])  # per-example cavity
        if not self.first:
            return self.q_w, bias  # hidden layers use the full weight marginal
        return self.q_w.div(self.msg_w[group.idx]), bias  # per-example cavity

    def forward(self, m_in: Message, group: Group) -> NatGaussian:
        """Forward messages of the pre-activations of the examples of ``group``.

        Args:
            m_in: Deterministic inputs (first layer) or forward messages of the inputs,
                ``(G, *in_shape)``.
            group: The examples.

        Returns:
            Forward messages of the outputs, ``(G, *out_shape)``.
        """
        weights, bias = self._distributions(group)
        if self.first:
            x_mean, x_var = m_in, None
        else:
            q_x = m_in.mul(self.m_toin[group.idx])
            if not self.is_conv:
                q_x = q_x.floor_precision()
            x_mean, x_var = q_x.mean, q_x.var
        if self.is_conv:
            fwd = conv2d.to_output(
                x_mean,
                x_var,
                weights,
                bias,
                kernel_size=self.spec.kernel_size,
                padding=self.spec.padding,
                mode=self.spec.padding_mode,
            )
            out = fwd.message()
        else:
            x_var = None if x_var is None else x_var.unsqueeze(1)
            fwd = linear.to_output(x_mean.unsqueeze(1), x_var, weights, bias)
            out = fwd.message()[:, 0]
        self._cache = (group, fwd)
        return out

    def backward(self, m_back: NatGaussian, group: Group) -> NatGaussian | None:
        """Update the marginals with the examples' new messages; return the input messages.

        Args:
            m_back: Backward messages of the outputs, ``(G, *out_shape)``.
            group: The examples of the preceding :meth:`forward`.

        Returns:
            Messages to the inputs, floored at precision 1e-8, or ``None`` for the first layer.
        """
        if self._cache is None or self._cache[0] is not group:
            raise RuntimeError("backward must follow the forward pass of the same examples")
        fwd = self._cache[1]
        self._cache = None
        factor = conv2d if self.is_conv else linear
        if not self.is_conv:
            m_back = m_back[:, None]
        m_terms = factor.term_messages(fwd, m_back)
        keep = self.msg_w is not None
        per_example_w = keep and self.first
        new_w = factor.to_weight(fwd, m_terms, reduce_examples=not per_example_w)
        new_b = factor.to_bias(fwd, m_back, reduce_examples=not keep)
        if keep:
            sites = group.idx if per_example_w else group.index
            delta_w = self._replace(self.msg_w, sites, new_w)
            delta_b = self._replace(self.msg_b, group.idx, new_b)
        else:
            delta_w, delta_b = new_w, new_b
        for target in (self.q_w, self.total_w):
            _add_(target, delta_w)
        for target in (self.q_b, self.total_b):
            _add_(target, delta_b)
        if self.first:
            return None
        m_x = factor.to_input(fwd, m_terms)
        if not self.is_conv:
            m_x = m_x[:, 0]
        m_x = m_x.floor_precision()
        _put(self.m_toin, group.idx, m_x)
        return m_x

    @staticmethod
    def _replace(store: NatGaussian, sites: Tensor | int, new: NatGaussian) -> NatGaussian:
        """Store the sites' new messages; return the product of new / old messages."""
        delta = new.div(store[sites])
        if isinstance(sites, Tensor):
            delta = delta.sum(0)
        _put(store, sites, new)
        return delta

    def predict(self, m_in: Message) -> NatGaussian:
        """Forward moment propagation with the marginals (data as input of the first layer)."""
        if isinstance(m_in, NatGaussian):
            x_mean, x_var = m_in.mean, m_in.var
        else:
            x_mean, x_var = m_in, None
        if self.is_conv:
            return conv2d.predict(
                x_mean,
                x_var,
                self.q_w,
                self.q_b,
                kernel_size=self.spec.kernel_size,
                padding=self.spec.padding,
                mode=self.spec.padding_mode,
            )
        x_var = None if x_var is None else x_var.unsqueeze(1)
        return linear.predict(x_mean.unsqueeze(1), x_var, self.q_w, self.q_b)[:, 0]


class LeakyReLULayer:
    """LeakyReLU with EP messages; remembers each example's last backward message on ``z``."""

    def __init__(self, spec: specs.LeakyReLU, shape: tuple[int, ...], dtype: torch.dtype, device):
        self.leak = spec.leak
        self.shape, self.dtype, self.device = shape, dtype, device
        self.m_back: NatGaussian | None = None
        self._cache: tuple[Tensor, NatGaussian] | None = None

    def begin_batch(self, batch_size: int, num_groups: int) -> None:
        """Forget the backward messages of the previous batch visit."""
        self.m_back = NatGaussian.uniform(
            (batch_size, *self.shape), dtype=self.dtype, device=self.device
        )

    def forward(self, m_in: NatGaussian, group: Group) -> NatGaussian:
        """EP forward message, using the example's backward message of the last iteration."""
        self._cache = (group, m_in)
        return leaky_relu.to_output(m_in, self.m_back[group.idx], self.leak)

    def backward(self, m_back: NatGaussian, group: Group) -> NatGaussian:
        """EP backward message (floored at precision 1e-8); remembers ``m_back``."""
        if self._cache is None or self._cache[0] is not group:
            raise RuntimeError("backward must follow the forward pass of the same examples")
        m_in = self._cache[1]
        _put(self.m_back, group.idx, m_back)
        self._cache = None
        return leaky_relu.to_input(m_in, m_back, self.leak).floor_precision()

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
        """Pooled forward messages."""
        self._cache = maxpool.to_output(m_in, self.kernel_size)
        return self._cache.message()

    def backward(self, m_back: NatGaussian, group: Group) -> NatGaussian:
        """Messages to the pooled inputs."""
        if self._cache is None:
            raise RuntimeError("backward must follow the forward pass of the same examples")
        out, self._cache = maxpool.to_input(self._cache, m_back), None
        return out

    def predict(self, m_in: NatGaussian) -> NatGaussian:
        """Pooled forward messages."""
        return maxpool.predict(m_in, self.kernel_size)


class FlattenLayer:
    """Reshape ``(G, C, H, W)`` to ``(G, C·H·W)`` and back."""

    def __init__(self, in_shape: tuple[int, ...]):
        self.in_shape = in_shape

    def begin_batch(self, batch_size: int, num_groups: int) -> None:
        """Nothing to reset."""

    def _flat(self, m: Message) -> Message:
        if isinstance(m, NatGaussian):
            return m.reshape(m.shape[0], -1)
        return m.reshape(m.shape[0], -1)

    def forward(self, m_in: Message, group: Group) -> Message:
        """Flattened messages (or data)."""
        return self._flat(m_in)

    def backward(self, m_back: NatGaussian | None, group: Group) -> NatGaussian | None:
        """Messages reshaped to the input shape (``None`` before the first weight layer)."""
        if m_back is None:
            return None
        return m_back.reshape(m_back.shape[0], *self.in_shape)

    def predict(self, m_in: Message) -> Message:
        """Flattened messages (or data)."""
        return self._flat(m_in)


class ArgmaxLayer:
    """Classification output: backward messages from the label, probabilities at prediction."""

    def __init__(self, spec: specs.Argmax):
        self.regularize = spec.regularize
        self._cache: NatGaussian | None = None

    def begin_batch(self, batch_size: int, num_groups: int) -> None:
        """Nothing to reset (the factor keeps no state that influences training)."""

    def forward(self, m_in: NatGaussian, group: Group) -> NatGaussian:
        """Remember the logits' forward messages."""
        self._cache = m_in
        return m_in

    def backward(self, labels: Tensor, group: Group) -> NatGaussian:
        """Messages to the logits given the labels ``(G,)``."""
        if self._cache is None:
            raise RuntimeError("backward must follow the forward pass of the same examples")
        out = argmax.to_logits(self._cache, labels, regularize=self.regularize)
        self._cache = None
        return out

    def predict(self, m_in: NatGaussian) -> Tensor:
        """Class probabilities ``(N, K)``."""
        return argmax.predict(m_in.mean, m_in.var)


class RegressionLayer:
    """Gaussian likelihood with fixed noise variance."""

    def __init__(self, spec: specs.Regression):
        self.noise_var = spec.noise_var

    def begin_batch(self, batch_size: int, num_groups: int) -> None:
        """Nothing to reset."""

    def forward(self, m_in: NatGaussian, group: Group) -> NatGaussian:
        """No-op during training."""
        return m_in

    def backward(self, y: Tensor, group: Group) -> NatGaussian:
        """Messages N(y, noise_var) to the outputs, ``(G, D)``."""
        return regression.to_output(y, self.noise_var)

    def predict(self, m_in: NatGaussian) -> tuple[Tensor, Tensor]:
        """Predictive mean and variance including the noise."""
        return regression.predict(m_in, self.noise_var)
