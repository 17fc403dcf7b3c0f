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

Several independent networks can be trained together: every tensor then starts with the
leading dimensions ``lead = (R,)`` (``()`` for a single network). Parameters are
``(*lead, ...)``; per-example state is ``(*lead, B, ...)`` with the examples on axis
``len(lead)``; data shared by all networks are ``(B, ...)`` and broadcast.

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

SERIES_TERMS_PER_EXAMPLE = 4
"""Use the series evaluation of fully connected messages while it needs at most this many
monomials per example of the group (a monomial costs a few passes over the weights, the
elementwise evaluation a few dozen passes over the group's per-term tensor)."""


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


def least_squares_scale(d_own: Tensor, d_tot: Tensor, ex: int) -> Tensor:
    """``a = Σ δ_own δ_tot / Σ δ_tot²`` over examples and positions, clamped to [0, 1].

    Args:
        d_own: Shifts each example's message causes alone, ``(*lead, G, P, D_out)``.
        d_tot: Shifts the group's messages cause together, same shape.
        ex: Axis of the examples.

    Returns:
        ``(*lead, 1, D_out)``; 1 where the group causes no shift.
    """
    dims = (ex, ex + 1)
    num, den = (d_own * d_tot).sum(dims), (d_tot * d_tot).sum(dims)
    a = torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), 1.0)
    return a.clamp(0.0, 1.0).unsqueeze(ex)


def joint_innovations(
    fwd: linear.LinearForward, m_back: NatGaussian, previous: Tensor
) -> tuple[NatGaussian, Tensor]:
    """Backward messages of a group corrected for the examples' simultaneous updates.

    Per example ``n`` and unit ``j`` the message to the weights is driven by the innovation
    ``a_nj = (τ_b − ρ_b μ_s) / (1 + ρ_b σ²_s)``: the residual weighted by its total variance.
    Computed against the same marginal, examples that share input directions all correct the
    same residual, and their summed updates overshoot. For a linear-Gaussian layer the exact
    joint (Kalman) update of the group's weight means uses instead ``β_j = (I + C_j K_j)^(-1)
    a_j`` with the coupling ``K_j[n, m] = Σ_i E[x_ni] E[x_mi] Var(W_ij) + Var(b_j)`` between
    different examples (0 on the diagonal) and ``C_j = diag(ρ_b / (1 + ρ_b σ²_s))``.

    Iterated sweeps apply the correction to the change of the innovations: with ``a⁰`` those
    used in the group's previous sweep (0 at the first), ``β = a⁰ + (I + CK)^(-1) (a − a⁰)``,
    so a converged sweep (``a = a⁰``) changes nothing and the fixed points are those of the
    sequential schedule. The message is returned with ``β`` in place of ``a``
    (``τ_b' = ρ_b μ_s + (1 + ρ_b σ²_s) β``, precision unchanged).

    Args:
        fwd: Forward pass of a fully connected layer (one position), weights shared by the group.
        m_back: Backward messages, ``(*B, G, 1, D_out)``.
        previous: Innovations used in the group's previous sweep, ``(*B, G, D_out)``.

    Returns:
        The corrected backward messages (same shape) and the innovations used, ``(*B, G, D_out)``.
    """
    x = fwd.x_mean[..., 0, :]  # (*B, G, D_in)
    w_var = fwd.w_var[..., 0, :, :] if fwd.w_var.shape[-3] == 1 else fwd.w_var.mean(-3)
    rho_b, tau_b = m_back.rho[..., 0, :], m_back.tau[..., 0, :]  # (*B, G, D_out)
    out_mean, out_var = fwd.out_mean[..., 0, :], fwd.out_var[..., 0, :]
    den = 1.0 + rho_b * out_var
    c, a = rho_b / den, (tau_b - rho_b * out_mean) / den
    b_var = fwd.b_var if fwd.b_var.shape[-2] == 1 else fwd.b_var.mean(-2, keepdim=True)
    pairs = x.unsqueeze(-2) * x.unsqueeze(-3)  # (*B, G, G, D_in)
    coupling = pairs @ w_var.unsqueeze(-3) + b_var.unsqueeze(-2)  # (*B, G, G, D_out)
    coupling = coupling.movedim(-1, -3)  # (*B, D_out, G, G)
    eye = torch.eye(coupling.shape[-1], dtype=coupling.dtype, device=coupling.device)
    system = eye + c.transpose(-1, -2).unsqueeze(-1) * coupling * (1 - eye)
    change = (a - previous).transpose(-1, -2).unsqueeze(-1)  # (*B, D_out, G, 1)
    beta = previous + torch.linalg.solve(system, change)[..., 0].transpose(-1, -2)
    tau = rho_b * out_mean + den * beta
    return NatGaussian(tau.unsqueeze(-2), m_back.rho), beta


def _scale_mean_shift(delta: NatGaussian, mean: Tensor, factor: Tensor) -> NatGaussian:
    """Scale the mean shift a message causes in a marginal, keeping its precision.

    ``τ'' = ρ μ_q + a (τ − ρ μ_q)``: multiplied into a marginal with mean ``μ_q``, the scaled
    message moves the mean ``a`` times as far as the original one (for any sign of ``ρ``, so
    it also applies to the replacement ``new / old`` of a message).
    """
    anchored = delta.rho * mean
    return NatGaussian(anchored + factor * (delta.tau - anchored), delta.rho)


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
        prior_w: Prior of the weights, ``(*lead, D_in, D_out)`` (kernel ``(C_in·k·k, C_out)``).
        prior_b: Prior of the biases, ``(*lead, D_out)``.
        first: Whether this is the first weight layer (deterministic input, exact EP with
            per-example cavities) or a hidden one (Gaussian input, weight marginals, variational
            product messages).
        lead: Leading dimensions of independent networks, ``()`` or ``(R,)``.
    """

    def __init__(
        self,
        spec: specs.Linear | specs.Conv2d,
        in_shape: tuple[int, ...],
        prior_w: NatGaussian,
        prior_b: NatGaussian,
        *,
        first: bool,
        lead: tuple[int, ...] = (),
    ) -> None:
        self.spec = spec
        self.in_shape = in_shape
        self.first = first
        self.lead = lead
        self.ex = len(lead)  # axis of the examples in per-example tensors
        self.is_conv = isinstance(spec, specs.Conv2d)
        self.prior_w, self.prior_b = prior_w, prior_b
        self.q_w, self.q_b = prior_w.clone(), prior_b.clone()
        # state of the current batch visit
        self.cavity_w, self.cavity_b = prior_w, prior_b
        self.total_w = self._uniform(prior_w.shape)
        self.total_b = self._uniform(prior_b.shape)
        self.msg_w: NatGaussian | None = None  # (*lead, sites, *w_shape)
        self.msg_b: NatGaussian | None = None  # (*lead, examples, D_out)
        self.m_toin: NatGaussian | None = None  # (*lead, examples, *in_shape), hidden layers
        self.innovations: Tensor | None = None  # (*lead, examples, D_out), scaled schedule
        self._keep_messages = False
        self._own_messages_zero = True
        self.scaled = False  # combine a group's messages with the scaled schedule's step
        self.fast = True  # evaluate fully connected messages by matrix products when possible
        self.last_scale: Tensor | None = None  # the last group's factors a_j (diagnostics)
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
        w_shape, b_shape = self.prior_w.shape[self.ex :], self.prior_b.shape[self.ex :]
        if self._keep_messages:
            sites = batch_size if self.first else num_groups
            self.msg_w = self._uniform((*self.lead, sites, *w_shape))
            self.msg_b = self._uniform((*self.lead, batch_size, *b_shape))
        if not self.first:
            self.m_toin = self._uniform((*self.lead, batch_size, *self.in_shape))
        if self.scaled and not self.is_conv:
            d_out = self.prior_b.shape[-1]
            self.innovations = torch.zeros(
                (*self.lead, batch_size, d_out), dtype=self.dtype, device=self.device
            )

    def end_iteration(self) -> None:
        """Recompute the marginals exactly as cavity × product of this visit's messages."""
        if self.msg_w is not None and self.msg_b is not None:
            self.total_w = self.msg_w.sum(self.ex)
            self.total_b = self.msg_b.sum(self.ex)
            self._own_messages_zero = False
        self.q_w = self.cavity_w.mul(self.total_w)
        self.q_b = self.cavity_b.mul(self.total_b)

    def visit_messages(self) -> tuple[NatGaussian, NatGaussian]:
        """Product of the visit's messages: the new batch message (weights, biases)."""
        return self.total_w, self.total_b

    # -------------------------------------------------------------------------- messages
    def _distributions(self, group: Group) -> tuple[NatGaussian, NatGaussian]:
        """Weight and bias distributions of the group's examples, ``(*lead, 1 or G, ...)``."""
        weights = NatGaussian(self.q_w.tau.unsqueeze(self.ex), self.q_w.rho.unsqueeze(self.ex))
        bias = NatGaussian(self.q_b.tau.unsqueeze(self.ex), self.q_b.rho.unsqueeze(self.ex))
        if self._own_messages_zero or self.msg_b is None:
            return weights, bias
        bias = bias.div(self.msg_b.take(self.ex, group.idx))  # per-example cavities
        if self.first:
            weights = weights.div(self.msg_w.take(self.ex, group.idx))
        return weights, bias  # hidden layers use the full weight marginal

    def forward(self, m_in: Message, group: Group) -> NatGaussian:
        """Forward messages of the pre-activations of the examples of ``group``.

        Args:
            m_in: Deterministic inputs (first layer; ``(G, *in_shape)`` or
                ``(*lead, G, *in_shape)``) or forward messages of the inputs,
                ``(*lead, G, *in_shape)``.
            group: The examples.

        Returns:
            Forward messages of the outputs, ``(*lead, G, *out_shape)``.
        """
        weights, bias = self._distributions(group)
        if self.first:
            x_mean, x_var = m_in, None
        else:
            q_x = m_in.mul(self.m_toin.take(self.ex, group.idx))
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
            x_var = None if x_var is None else x_var.unsqueeze(-2)
            fwd = linear.to_output(x_mean.unsqueeze(-2), x_var, weights, bias)
            out = fwd.message()[..., 0, :]
        self._cache = (group, fwd)
        return out

    def backward(self, m_back: NatGaussian, group: Group) -> NatGaussian | None:
        """Update the marginals with the examples' new messages; return the input messages.

        Args:
            m_back: Backward messages of the outputs, ``(*lead, G, *out_shape)``.
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
            m_back = NatGaussian(m_back.tau.unsqueeze(-2), m_back.rho.unsqueeze(-2))
        keep = self.msg_w is not None
        scaled = self.scaled and group.idx.numel() > 1
        if scaled and not self.is_conv:  # fully connected: correct the innovations instead
            previous = self.innovations.index_select(self.ex, group.idx)
            m_back, used = joint_innovations(fwd, m_back, previous)
            self.innovations.index_copy_(self.ex, group.idx, used)
            scaled = False
        new_b = factor.to_bias(fwd, m_back, reduce_examples=not (scaled or keep))
        fast = None
        if self.fast and not self.is_conv and not (self.first and keep):
            fast = linear.group_backward(
                fwd,
                m_back,
                to_input=not self.first,
                own_shift=scaled,
                max_terms=SERIES_TERMS_PER_EXAMPLE * group.idx.numel(),
            )
        if fast is not None:
            new_w = NatGaussian(
                fast.to_weight.tau.unsqueeze(self.ex), fast.to_weight.rho.unsqueeze(self.ex)
            )
            w_shift = None if fast.own_shift is None else fast.own_shift.unsqueeze(-2)
            m_x = fast.to_input
        else:
            m_terms = factor.term_messages(fwd, m_back)
            new_w = factor.to_weight(
                fwd, m_terms, reduce_examples=not (scaled or keep and self.first)
            )
            w_shift = None
            if scaled:  # per-example shifts from the per-example messages
                q = self.q_w
                own = (q.tau.unsqueeze(self.ex) + new_w.tau) / (
                    q.rho.unsqueeze(self.ex) + new_w.rho
                )
                w_shift = self._x_mean(fwd) @ (own - q.mean.unsqueeze(self.ex))
            m_x = None if self.first else factor.to_input(fwd, m_terms)
            if m_x is not None and not self.is_conv:
                m_x = m_x[..., 0, :]
        scale = self._scale_factors(fwd, new_w, w_shift, new_b) if scaled else None
        self._absorb(group, new_w, new_b, scale)
        if self.first:
            return None
        m_x = m_x.floor_precision()
        self.m_toin.put_(self.ex, group.idx, m_x)
        return m_x

    def _x_mean(self, fwd: linear.LinearForward | conv2d.ConvForward) -> Tensor:
        return (fwd.linear if self.is_conv else fwd).x_mean

    def _absorb(
        self, group: Group, new_w: NatGaussian, new_b: NatGaussian, scale: Tensor | None
    ) -> None:
        """Replace the group's messages by the new ones in the marginals and the visit's total.

        Args:
            group: The examples.
            new_w: New weight messages, per example ``(*lead, G, ...)`` or already multiplied
                over the group ``(*lead, 1, ...)``.
            new_b: New bias messages, likewise.
            scale: Factors ``a`` of the scaled schedule, ``(*lead, 1, D_out)``, or ``None``.
        """
        ex = self.ex
        group_site = torch.tensor([group.index], device=group.idx.device)
        w_factor = None if scale is None else scale.unsqueeze(-2)
        for new, q, total, store, sites, factor in (
            (
                new_w,
                self.q_w,
                self.total_w,
                self.msg_w,
                group.idx if self.first else group_site,
                w_factor,
            ),
            (new_b, self.q_b, self.total_b, self.msg_b, group.idx, scale),
        ):
            if store is not None and new.shape[ex] != sites.numel():
                new = NatGaussian(new.tau.sum(ex, keepdim=True), new.rho.sum(ex, keepdim=True))
            old = None if store is None or self._own_messages_zero else store.take(ex, sites)
            delta = new if old is None else new.div(old)
            if factor is not None:
                delta = _scale_mean_shift(delta, q.mean.unsqueeze(ex), factor)
            if store is not None:
                store.put_(ex, sites, delta if old is None else old.mul(delta))
            change = delta.sum(ex)
            q.add_(change)
            total.add_(change)

    def _scale_factors(
        self,
        fwd: linear.LinearForward | conv2d.ConvForward,
        new_w: NatGaussian,
        w_shift: Tensor,
        new_b: NatGaussian,
    ) -> Tensor:
        """Per-unit step factors of the ``scaled`` schedule for a group's new messages.

        All examples of a group compute their messages against the same marginal ``q``.
        Absorbed together, each example's update assumes that it alone explains its residual,
        and the updates add up along the directions the examples share: the plain sum
        overshoots by about the largest eigenvalue of the examples' (variance-weighted) input
        Gram matrix. Every output unit ``j`` therefore gets one factor ``a_j ∈ [0, 1]`` on the
        mean part of its messages: the least-squares fit of the shift that the group's messages
        together cause in the examples' pre-activations, ``δ_tot``, to the sum of the shifts
        each example's message causes alone, ``δ_own`` (both relative to ``q``):

            a_j = Σ_{n,p} δ_own[n,p,j] δ_tot[n,p,j] / Σ_{n,p} δ_tot[n,p,j]².

        Orthogonal examples get ``a_j = 1`` (the plain sum); ``g`` identical examples get
        ``1/g``. See :func:`_scale_mean_shift` for how the factor is applied.

        Args:
            fwd: Forward pass of the group.
            new_w: Weight messages, per example ``(*lead, G, ...)`` or their product
                ``(*lead, 1, ...)``.
            w_shift: Each example's own pre-activation shift from its weight message,
                ``(*lead, G, P, D_out)``.
            new_b: Per-example bias messages, ``(*lead, G, D_out)``.

        Returns:
            The factors, ``(*lead, 1, D_out)``.
        """
        ex = self.ex
        q_w, q_b = self.q_w, self.q_b
        own_b = (q_b.tau.unsqueeze(ex) + new_b.tau) / (q_b.rho.unsqueeze(ex) + new_b.rho)
        d_own = w_shift + (own_b - q_b.mean.unsqueeze(ex)).unsqueeze(-2)  # (*lead, G, P, D_out)
        total_w, total_b = new_w.sum(ex), new_b.sum(ex)
        tot_w = (q_w.tau + total_w.tau) / (q_w.rho + total_w.rho) - q_w.mean
        tot_b = (q_b.tau + total_b.tau) / (q_b.rho + total_b.rho) - q_b.mean
        d_tot = self._x_mean(fwd) @ tot_w.unsqueeze(ex) + tot_b.unsqueeze(ex).unsqueeze(-2)
        return least_squares_scale(d_own, d_tot, ex)

    def predict(self, m_in: Message) -> NatGaussian:
        """Forward moment propagation with the marginals (data as input of the first layer)."""
        if isinstance(m_in, NatGaussian):
            x_mean, x_var = m_in.mean, m_in.var
        else:
            x_mean, x_var = m_in, None
        weights = NatGaussian(self.q_w.tau.unsqueeze(self.ex), self.q_w.rho.unsqueeze(self.ex))
        bias = NatGaussian(self.q_b.tau.unsqueeze(self.ex), self.q_b.rho.unsqueeze(self.ex))
        if self.is_conv:
            return conv2d.predict(
                x_mean,
                x_var,
                weights,
                bias,
                kernel_size=self.spec.kernel_size,
                padding=self.spec.padding,
                mode=self.spec.padding_mode,
            )
        x_var = None if x_var is None else x_var.unsqueeze(-2)
        return linear.predict(x_mean.unsqueeze(-2), x_var, weights, bias)[..., 0, :]


class LeakyReLULayer:
    """LeakyReLU with EP messages; remembers each example's last backward message on ``z``."""

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
        self.m_back: NatGaussian | None = None
        self._cache: tuple[Group, NatGaussian] | None = None

    def begin_batch(self, batch_size: int, num_groups: int) -> None:
        """Forget the backward messages of the previous batch visit."""
        self.m_back = NatGaussian.uniform(
            (*self.lead, batch_size, *self.shape), dtype=self.dtype, device=self.device
        )

    def forward(self, m_in: NatGaussian, group: Group) -> NatGaussian:
        """EP forward message, using the example's backward message of the last iteration."""
        self._cache = (group, m_in)
        return leaky_relu.to_output(m_in, self.m_back.take(self.ex, group.idx), self.leak)

    def backward(self, m_back: NatGaussian, group: Group) -> NatGaussian:
        """EP backward message (floored at precision 1e-8); remembers ``m_back``."""
        if self._cache is None or self._cache[0] is not group:
            raise RuntimeError("backward must follow the forward pass of the same examples")
        m_in = self._cache[1]
        self.m_back.put_(self.ex, group.idx, m_back)
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
        """Messages to the logits given the labels ``(G,)`` or ``(*lead, G)``."""
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
        """Predictive mean and variance including the noise."""
        return regression.predict(m_in, self.noise_var)
