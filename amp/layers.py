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


CALIBRATION_LIMIT = 10.0
"""Largest factor by which the scaled schedule stretches a fully connected group's update to
reach the joint update's shift (the added precision of the messages shrinks the mean shift)."""


def least_squares_scale(d_own: Tensor, d_tot: Tensor, ex: int, upper: float = 1.0) -> Tensor:
    """``a = Σ δ_own δ_tot / Σ δ_tot²`` over examples and positions, clamped to [0, upper].

    Args:
        d_own: Shifts each example's message causes alone, ``(*lead, G, P, D_out)``.
        d_tot: Shifts the group's messages cause together, same shape.
        ex: Axis of the examples.
        upper: Largest factor.

    Returns:
        ``(*lead, 1, D_out)``; 1 where the group causes no shift.
    """
    dims = (ex, ex + 1)
    num, den = (d_own * d_tot).sum(dims), (d_tot * d_tot).sum(dims)
    a = torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), 1.0)
    return a.clamp(0.0, upper).unsqueeze(ex)


def joint_innovations(fwd: linear.LinearForward, m_back: NatGaussian) -> tuple[NatGaussian, Tensor]:
    """Backward messages of a group corrected for the examples' simultaneous updates.

    Per example ``n`` and unit ``j`` the message to the weights is driven by the innovation
    ``a_nj = (τ_b − ρ_b μ_s) / (1 + ρ_b σ²_s)``: the residual weighted by its total variance.
    Computed against the same distributions, examples that share input directions all correct
    the same residual, and their summed updates overshoot. For a linear-Gaussian layer the exact
    joint (Kalman) update of the group's weight means uses instead ``β_j = (I + C_j K_j)^(-1)
    a_j`` with the coupling ``K_j[n, m] = Σ_i E[x_ni] E[x_mi] Var(W_ij) + Var(b_j)`` between
    different examples (0 on the diagonal) and ``C_j = diag(ρ_b / (1 + ρ_b σ²_s))``; ``β_n`` is
    also example ``n``'s innovation against the others' joint update (leave-one-out), so a
    converged group does not move. The message is returned with ``β`` in place of ``a``
    (``τ_b' = ρ_b μ_s + (1 + ρ_b σ²_s) β``, precision unchanged), together with the joint
    update's shift of every example's pre-activation, ``Σ_m K_j[n, m] β_mj`` (diagonal included),
    against which the absorbed update is calibrated.

    Args:
        fwd: Forward pass of a fully connected layer (one position), weights shared by the group.
        m_back: Backward messages, ``(*B, G, 1, D_out)``.

    Returns:
        The corrected backward messages (same shape) and the target shifts ``(*B, G, 1, D_out)``.
    """
    x = fwd.x_mean[..., 0, :]  # (*B, G, D_in)
    w_var = fwd.w_var.squeeze(-3)  # (*lead, D_in, D_out)
    rho_b, tau_b = m_back.rho[..., 0, :], m_back.tau[..., 0, :]  # (*B, G, D_out)
    out_mean, out_var = fwd.out_mean[..., 0, :], fwd.out_var[..., 0, :]
    den = 1.0 + rho_b * out_var
    c, a = rho_b / den, (tau_b - rho_b * out_mean) / den
    pairs = x.unsqueeze(-2) * x.unsqueeze(-3)  # (*B, G, G, D_in)
    coupling = pairs @ w_var.unsqueeze(-3) + fwd.b_var.unsqueeze(-2)  # (*B, G, G, D_out)
    coupling = coupling.movedim(-1, -3)  # (*B, D_out, G, G), diagonal included
    eye = torch.eye(coupling.shape[-1], dtype=coupling.dtype, device=coupling.device)
    system = eye + c.transpose(-1, -2).unsqueeze(-1) * coupling * (1 - eye)
    beta = torch.linalg.solve(system, a.transpose(-1, -2).unsqueeze(-1))  # (*B, D_out, G, 1)
    target = (coupling @ beta)[..., 0].transpose(-1, -2)  # (*B, G, D_out)
    beta = beta[..., 0].transpose(-1, -2)
    tau = rho_b * out_mean + den * beta
    return NatGaussian(tau.unsqueeze(-2), m_back.rho), target.unsqueeze(-2)


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
        self.msg_b: NatGaussian | None = None  # (*lead, sites, D_out)
        self.m_toin: NatGaussian | None = None  # (*lead, examples, *in_shape), hidden layers
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
            w_sites = num_groups if self.scaled or not self.first else batch_size
            b_sites = num_groups if self.scaled else batch_size
            self.msg_w = self._uniform((*self.lead, w_sites, *w_shape))
            self.msg_b = self._uniform((*self.lead, b_sites, *b_shape))
        if not self.first:
            self.m_toin = self._uniform((*self.lead, batch_size, *self.in_shape))

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
        """Weight and bias distributions of the group's examples, ``(*lead, 1 or G, ...)``.

        Reference rule: the first layer uses each example's cavity (the marginal without the
        example's own message), hidden layers the full weight marginal, every layer the bias
        cavity. Group sites (``scaled``): every layer uses the group's cavity, the marginal
        without the group's own messages.
        """
        ex = self.ex
        if self._own_messages_zero or self.msg_b is None:
            return self.q_w.unsqueeze(ex), self.q_b.unsqueeze(ex)
        if self.scaled:
            return self._group_cavity(group)
        bias = self.q_b.unsqueeze(ex).div(self.msg_b.take(ex, group.idx))
        weights = self.q_w.unsqueeze(ex)
        if self.first:
            weights = weights.div(self.msg_w.take(ex, group.idx))
        return weights, bias

    def _group_cavity(self, group: Group) -> tuple[NatGaussian, NatGaussian]:
        """The marginals without the group's messages, ``(*lead, 1, ...)``."""
        site = torch.tensor([group.index], device=self.device)
        if self._own_messages_zero or self.msg_w is None:
            return self.q_w.unsqueeze(self.ex), self.q_b.unsqueeze(self.ex)
        return (
            self.q_w.unsqueeze(self.ex).div(self.msg_w.take(self.ex, site)),
            self.q_b.unsqueeze(self.ex).div(self.msg_b.take(self.ex, site)),
        )

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
        if not self.is_conv:
            m_back = m_back.unsqueeze(-2)  # one position
        if self.scaled:  # every group is a site, also a last group of a single example
            m_x = self._update_group(fwd, m_back, group)
        else:
            m_x = self._update_reference(fwd, m_back, group)
        if self.first:
            return None
        if not self.is_conv:
            m_x = m_x.take(-2, 0)
        m_x = m_x.floor_precision()
        self.m_toin.put_(self.ex, group.idx, m_x)
        return m_x

    def _messages(
        self,
        fwd: linear.LinearForward | conv2d.ConvForward,
        m_back: NatGaussian,
        *,
        per_example: bool,
    ) -> tuple[NatGaussian, NatGaussian | None]:
        """New weight messages (per example or their product over the group) and input messages.

        The series evaluation (:func:`amp.factors.linear.group_backward`) is used where it
        applies (weights shared by the group) and is cheaper; otherwise the elementwise one.
        """
        ex = self.ex
        if self.fast:
            lin = fwd.linear if self.is_conv else fwd
            back = conv2d.positions(m_back) if self.is_conv else m_back
            fast = linear.group_backward(
                lin, back, with_input=not self.first, per_example=per_example
            )
            if fast is not None:
                m_x = fast.to_input
                if m_x is not None and self.is_conv:
                    m_x = conv2d.fold_patches(fwd, m_x)
                new_w = fast.to_weight if per_example else fast.to_weight.unsqueeze(ex)
                return new_w, m_x
        factor = conv2d if self.is_conv else linear
        m_terms = factor.term_messages(fwd, m_back)
        new_w = factor.to_weight(fwd, m_terms, reduce_examples=not per_example)
        return new_w, None if self.first else factor.to_input(fwd, m_terms)

    def _update_reference(
        self, fwd: linear.LinearForward | conv2d.ConvForward, m_back: NatGaussian, group: Group
    ) -> NatGaussian | None:
        """Absorb the group's messages as the reference does (sum of the examples' messages).

        With several sweeps per visit the first layer keeps each example's weight message, hidden
        layers the product of each group's (the groups are the same in every sweep), and every
        layer each example's bias message; a new message replaces the old one in the marginal.
        """
        ex = self.ex
        keep = self.msg_w is not None
        factor = conv2d if self.is_conv else linear
        new_w, m_x = self._messages(fwd, m_back, per_example=keep and self.first)
        new_b = factor.to_bias(fwd, m_back, reduce_examples=not keep)
        w_sites = group.idx if self.first else torch.tensor([group.index], device=self.device)
        for new, q, total, store, sites in (
            (new_w, self.q_w, self.total_w, self.msg_w, w_sites),
            (new_b, self.q_b, self.total_b, self.msg_b, group.idx),
        ):
            delta = new
            if store is not None:
                if new.shape[ex] != sites.numel():
                    new = new.sum(ex, keepdim=True)
                delta = new if self._own_messages_zero else new.div(store.take(ex, sites))
                store.put_(ex, sites, new)
            change = delta.sum(ex)
            q.add_(change)
            total.add_(change)
        return m_x

    def _update_group(
        self, fwd: linear.LinearForward | conv2d.ConvForward, m_back: NatGaussian, group: Group
    ) -> NatGaussian | None:
        """Absorb a group's messages as one site (``scaled`` schedule).

        The group's messages were computed against its cavity (the marginals without the group's
        previous messages) and are combined so that they do not overshoot: fully connected
        layers use the innovations of the joint update (:func:`joint_innovations`),
        convolutions a least-squares step per output unit (:func:`least_squares_scale`). The
        product of the group's new messages then replaces its old one.
        """
        ex = self.ex
        factor = conv2d if self.is_conv else linear
        cavity_w, cavity_b = self._group_cavity(group)
        mean_w, mean_b = cavity_w.mean, cavity_b.mean
        if not self.is_conv:
            m_back, target = joint_innovations(fwd, m_back)
            new_w, m_x = self._messages(fwd, m_back, per_example=False)
            new_w = new_w.sum(ex, keepdim=True)
            new_b = factor.to_bias(fwd, m_back, reduce_examples=True)
            # calibrate: the absorbed update's shift of the pre-activations against the joint one
            shift_w = cavity_w.mul(new_w).mean - mean_w
            shift_b = cavity_b.mul(new_b).mean - mean_b
            achieved = fwd.x_mean @ shift_w + shift_b.unsqueeze(-2)
            scale = least_squares_scale(target, achieved, ex, upper=CALIBRATION_LIMIT)
        else:
            new_w, m_x = self._messages(fwd, m_back, per_example=True)
            new_b = factor.to_bias(fwd, m_back, reduce_examples=False)
            scale = self._scale_factors(fwd, (cavity_w, mean_w), (cavity_b, mean_b), new_w, new_b)
        new_w = _scale_mean_shift(new_w, mean_w, scale.unsqueeze(-2))
        new_b = _scale_mean_shift(new_b, mean_b, scale)
        if self.is_conv:
            new_w, new_b = new_w.sum(ex, keepdim=True), new_b.sum(ex, keepdim=True)
        site = torch.tensor([group.index], device=self.device)
        for new, cavity, name, total, store in (
            (new_w, cavity_w, "q_w", self.total_w, self.msg_w),
            (new_b, cavity_b, "q_b", self.total_b, self.msg_b),
        ):
            old = getattr(self, name)
            updated = cavity.mul(new).take(ex, 0)
            total.add_(updated.div(old))
            setattr(self, name, updated)
            if store is not None:
                store.put_(ex, site, new)
        return m_x

    def _scale_factors(
        self,
        fwd: conv2d.ConvForward,
        cavity_w: tuple[NatGaussian, Tensor],
        cavity_b: tuple[NatGaussian, Tensor],
        new_w: NatGaussian,
        new_b: NatGaussian,
    ) -> Tensor:
        """Per-unit step factors of a group's convolution messages (``scaled`` schedule).

        All examples of a group compute their messages against the same cavity. Absorbed
        together, each example's update assumes that it alone explains its residual, and the
        updates add up along the directions the examples share. Every output channel ``j``
        therefore gets one factor ``a_j ∈ [0, 1]`` on the mean part of its messages: the
        least-squares fit of the shift that the group's messages together cause in the examples'
        pre-activations, ``δ_tot``, to the sum of the shifts each example's message causes alone,
        ``δ_own`` (both relative to the cavity). Orthogonal examples get ``a_j = 1`` (the plain
        sum); ``g`` identical examples get ``1/g``.

        Args:
            fwd: Forward pass of the group.
            cavity_w: Weight cavity of the group, ``(*lead, 1, J, C_out)``, and its means.
            cavity_b: Bias cavity, ``(*lead, 1, C_out)``, and its means.
            new_w: Per-example weight messages, ``(*lead, G, J, C_out)``.
            new_b: Per-example bias messages, ``(*lead, G, C_out)``.

        Returns:
            The factors, ``(*lead, 1, C_out)``.
        """
        ex = self.ex

        def shifts(cavity: tuple[NatGaussian, Tensor], new: NatGaussian) -> tuple[Tensor, Tensor]:
            q, mean = cavity
            own = q.mul(new).mean - mean
            total = q.mul(new.sum(ex, keepdim=True)).mean - mean
            return own, total

        own_w, tot_w = shifts(cavity_w, new_w)
        own_b, tot_b = shifts(cavity_b, new_b)
        x = fwd.linear.x_mean  # (*B, P, J)
        d_own = x @ own_w + own_b.unsqueeze(-2)  # (*lead, G, P, C_out)
        d_tot = x @ tot_w + tot_b.unsqueeze(-2)
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
