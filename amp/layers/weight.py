"""Weight layers: the marginals of a layer's weights and biases and the reference update.

A :class:`WeightLayer` holds the marginal ``q`` of its weights and biases and the messages of
the examples of the current batch visit. It starts a visit from the cavity the trainer hands it
(prior × messages of all other batches), so ``q = cavity × Π_n m_n`` holds at all times;
:meth:`WeightLayer.end_iteration` recomputes it exactly.

The update here is the reference one: the messages of a group of examples are computed against
the same distributions and their sum is absorbed. A schedule that combines a group's messages
differently hands the layer a combiner with the visit (:class:`amp.schedules.ScaledCombiner`);
the group is then one *site* whose product message replaces its previous one.

Reference: the weight layers of ``lib/factor_graph.jl``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from amp import specs
from amp.factors import conv2d, linear, linear_fused, linear_series
from amp.gaussian import NatGaussian
from amp.layers.base import Group, Message

if TYPE_CHECKING:
    from amp.schedules import ScaledCombiner

__all__ = ["WeightLayer"]

Forward = linear.LinearForward | conv2d.ConvForward


class WeightLayer:
    """A fully connected or convolutional layer with Gaussian weights and biases.

    The messages of one batch visit are kept per *site* so that a later iteration can replace
    them: the first layer needs each example's own weight message (its cavity excludes it);
    hidden layers use the full weight marginal, so only the product of a group's messages is
    needed (the groups are the same in every iteration). Bias messages are kept per example
    (every layer uses bias cavities). With a combiner every group is one site for weights and
    biases. With a single iteration per visit nothing is kept: the messages are absorbed into
    the marginal directly.

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
        self.combiner: ScaledCombiner | None = None  # how the visit combines a group's messages
        self._keep_messages = False
        self._own_messages_zero = True
        self.fast = True  # evaluate fully connected messages by matrix products when possible
        self.compiled = False  # the compiled exact kernel instead (amp.factors.linear_fused)
        self._cache: tuple[Group, Forward] | None = None

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
        self,
        cavity_w: NatGaussian,
        cavity_b: NatGaussian,
        *,
        keep_messages: bool,
        combiner: ScaledCombiner | None = None,
    ) -> None:
        """Start a batch visit from the batch's cavity.

        Args:
            cavity_w: Prior × messages of all other batches, for the weights.
            cavity_b: The same for the biases.
            keep_messages: Keep the visit's messages per site so that later iterations can
                replace them (needed when a batch is swept more than once).
            combiner: Combines each group's messages into one site's message (the ``scaled``
                schedule); ``None`` absorbs the sum of the examples' messages (the reference).
        """
        self.cavity_w, self.cavity_b = cavity_w, cavity_b
        self.q_w, self.q_b = cavity_w.clone(), cavity_b.clone()
        self.total_w = self._uniform(cavity_w.shape)
        self.total_b = self._uniform(cavity_b.shape)
        self.combiner = combiner
        self._keep_messages = keep_messages
        self._own_messages_zero = True

    def begin_batch(self, batch_size: int, num_groups: int) -> None:
        """Reset the per-site messages (to weights, biases and inputs) to uniform."""
        self.msg_w = self.msg_b = None
        w_shape, b_shape = self.prior_w.shape[self.ex :], self.prior_b.shape[self.ex :]
        if self._keep_messages:
            group_sites = self.combiner is not None
            w_sites = num_groups if group_sites or not self.first else batch_size
            b_sites = num_groups if group_sites else batch_size
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
        cavity. Group sites (with a combiner) follow the same rule with the group in place of
        the example: the group's cavity (the marginal without the group's own messages) for the
        first layer's weights and every bias, the full marginal for hidden layers' weights
        (unless the combiner asks for the group's cavity there too, see
        :attr:`amp.schedules.ScaledCombiner.hidden_weights`).
        """
        ex = self.ex
        if self._own_messages_zero or self.msg_b is None:
            return self.q_w.unsqueeze(ex), self.q_b.unsqueeze(ex)
        if self.combiner is not None:
            weights, bias = self.group_cavity(group)
            if not self.first and self.combiner.hidden_weights == "marginal":
                weights = self.q_w.unsqueeze(ex)
            return weights, bias
        bias = self.q_b.unsqueeze(ex).div(self.msg_b.take(ex, group.idx))
        weights = self.q_w.unsqueeze(ex)
        if self.first:
            weights = weights.div(self.msg_w.take(ex, group.idx))
        return weights, bias

    def group_cavity(self, group: Group) -> tuple[NatGaussian, NatGaussian]:
        """The marginals without the group's site messages, ``(*lead, 1, ...)`` (group sites)."""
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
        if self.combiner is not None:  # every group is a site, also a last group of one example
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

    def messages(
        self, fwd: Forward, m_back: NatGaussian, *, per_example: bool
    ) -> tuple[NatGaussian, NatGaussian | None]:
        """New weight messages (per example or their product over the group) and input messages.

        Where the weights are shared by the group, a layer with :attr:`compiled` set uses the
        compiled exact kernel (:func:`amp.factors.linear_fused.group_backward`; convolutions
        on their unfolded patches, every output position a term); otherwise, with :attr:`fast`
        set, the series evaluation (:func:`amp.factors.linear_series.group_backward`) is used
        where it is cheaper; otherwise the elementwise one (the reference).

        Args:
            fwd: Forward pass of the group.
            m_back: Backward messages of the outputs, ``(*lead, G, P, D_out)`` (fully connected:
                ``P = 1``) or ``(*lead, G, C_out, H_out, W_out)``.
            per_example: Return the weight messages per example, ``(*lead, G, *w_shape)``,
                instead of their product over the group (the weights' shape).

        Returns:
            The weight messages, and the messages to the inputs (``None`` for the first layer;
            fully connected ``(*lead, G, 1, D_in)``, convolutions ``(*lead, G, *in_shape)``).
        """
        ex = self.ex
        if self.fast:
            lin = fwd.linear if self.is_conv else fwd
            back = conv2d.positions(m_back) if self.is_conv else m_back
            fast = None
            if self.compiled:
                fast = linear_fused.group_backward(
                    lin, back, with_input=not self.first, per_example=per_example
                )
            if fast is None:
                fast = linear_series.group_backward(
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
        self, fwd: Forward, m_back: NatGaussian, group: Group
    ) -> NatGaussian | None:
        """Absorb the group's messages as the reference does (sum of the examples' messages).

        With several sweeps per visit the first layer keeps each example's weight message, hidden
        layers the product of each group's (the groups are the same in every sweep), and every
        layer each example's bias message; a new message replaces the old one in the marginal.
        """
        ex = self.ex
        keep = self.msg_w is not None
        factor = conv2d if self.is_conv else linear
        new_w, m_x = self.messages(fwd, m_back, per_example=keep and self.first)
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

    def _update_group(self, fwd: Forward, m_back: NatGaussian, group: Group) -> NatGaussian | None:
        """Absorb a group's messages as one site, combined by the visit's combiner.

        The group's messages are computed against its cavity (the marginals without the group's
        previous messages); the product of the combined messages replaces the site's old one.
        """
        ex = self.ex
        cavity_w, cavity_b = self.group_cavity(group)
        new_w, new_b, m_x = self.combiner.combine(self, fwd, m_back, cavity_w, cavity_b)
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

    def predict(self, m_in: Message) -> NatGaussian:
        """Forward moment propagation with the marginals (data as input of the first layer).

        Args:
            m_in: Data ``(N, *in_shape)`` (first layer) or forward messages
                ``(*lead, N, *in_shape)``.

        Returns:
            Forward messages of the outputs, ``(*lead, N, *out_shape)``.
        """
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
