"""A message-passing Bayesian neural network built from layer specs.

Example:
    >>> import torch
    >>> from amp import Network, specs
    >>> net = Network(specs.arch("toy_regression"), input_shape=(1,), seed=0)
    >>> mean, var = net.predict(torch.zeros(3, 1, dtype=torch.float64))
    >>> mean.shape, bool((var > 0).all())
    (torch.Size([3, 1]), True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from amp import layers as L  # noqa: N812
from amp import priors, specs
from amp.gaussian import NatGaussian
from amp.runtime import flush_denormal as _flush_denormal

__all__ = ["Network"]

PREDICT_CHUNK = 1024
"""Examples per chunk on the prediction branch (bounds the memory of conv predictions)."""


class Network:
    """The factor graph of a network: one branch per training example, one for prediction.

    Args:
        layers: Layer specs, ending in an output spec (``Argmax``, ``Regression``).
        input_shape: Shape of one input, ``(D,)`` or ``(C, H, W)``.
        seed: Seed of the random prior means (ignored when ``generator`` is given).
        generator: Explicit CPU generator for the prior means.
        dtype: Floating-point type of all messages (float64 is the reference).
        device: Device of all tensors.
        replicas: Train this many independent networks together (independent prior draws).
            Every parameter and output then gets a leading dimension of this size.

    Raises:
        ValueError: If the specs do not form a valid network for ``input_shape``.
    """

    def __init__(
        self,
        layers: Sequence[specs.LayerSpec],
        input_shape: Sequence[int],
        *,
        seed: int = 0,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
        replicas: int | None = None,
    ) -> None:
        if replicas is not None and replicas < 1:
            raise ValueError(f"invalid replicas: {replicas!r} (must be >= 1 or None)")
        self.specs = tuple(layers)
        self.replicas = replicas
        self.lead: tuple[int, ...] = () if replicas is None else (replicas,)
        self.input_shape = tuple(int(s) for s in input_shape)
        shapes = specs.output_shapes(self.specs, self.input_shape)
        if not self.specs or not isinstance(self.specs[-1], specs.OUTPUT_SPECS):
            raise ValueError("the last layer must be an output spec (Argmax or Regression)")
        if not any(isinstance(s, specs.WEIGHT_SPECS) for s in self.specs):
            raise ValueError("a network needs at least one Linear or Conv2d layer")
        if isinstance(self.specs[-1], specs.Softmax):
            raise ValueError("the Softmax output is not supported; use Argmax()")
        self.dtype = dtype
        self.device = torch.device(device)
        if generator is None:
            generator = torch.Generator().manual_seed(seed)
        self.layers: list = []
        in_shape = self.input_shape
        first = True
        for spec, out_shape in zip(self.specs, shapes, strict=True):
            self.layers.append(self._build(spec, in_shape, out_shape, first, generator))
            first = first and not isinstance(spec, specs.WEIGHT_SPECS)
            in_shape = out_shape

    def _build(self, spec, in_shape, out_shape, first: bool, generator: torch.Generator):
        kw = {"dtype": self.dtype, "device": self.device}
        if isinstance(spec, specs.Linear):
            d_in, d_out = in_shape[0], spec.out_features
            shape = (d_in, d_out)
        elif isinstance(spec, specs.Conv2d):
            d_in = in_shape[0] * spec.kernel_size**2
            d_out = math.prod(out_shape)
            shape = (d_in, spec.out_channels)
        elif isinstance(spec, specs.LeakyReLU):
            return L.LeakyReLULayer(spec, in_shape, lead=self.lead, **kw)
        elif isinstance(spec, specs.MaxPool2d):
            return L.MaxPoolLayer(spec)
        elif isinstance(spec, specs.Flatten):
            return L.FlattenLayer(in_shape)
        elif isinstance(spec, specs.Argmax):
            return L.ArgmaxLayer(spec)
        else:
            return L.RegressionLayer(spec)
        prior_w = priors.weight_prior(
            (*self.lead, *shape),
            d_in,
            d_out,
            post_leaky=not first,
            generator=generator,
            prior_var=spec.prior_var,
            **kw,
        )
        prior_b = priors.bias_prior(shape[1], **kw).expand(*self.lead, shape[1])
        return L.WeightLayer(spec, in_shape, prior_w, prior_b, first=first, lead=self.lead)

    # ------------------------------------------------------------------------------ access
    @property
    def weight_layers(self) -> list[L.WeightLayer]:
        """The layers with weights, in order."""
        return [layer for layer in self.layers if isinstance(layer, L.WeightLayer)]

    @property
    def task(self) -> str:
        """``"classification"`` or ``"regression"``."""
        return "regression" if isinstance(self.specs[-1], specs.Regression) else "classification"

    def num_parameters(self) -> int:
        """Number of weights and biases."""
        return specs.count_parameters(self.specs, self.input_shape)

    # ---------------------------------------------------------------------- training branch
    def begin_batch(self, batch_size: int, num_groups: int) -> None:
        """Reset all per-example state for a batch visit split into ``num_groups`` groups."""
        for layer in self.layers:
            layer.begin_batch(batch_size, num_groups)

    def train_step(self, x: Tensor, y: Tensor, group: L.Group) -> None:
        """One forward and one backward sweep for a group of examples.

        Args:
            x: Inputs ``(G, *input_shape)``.
            y: Labels ``(G,)`` or targets ``(G, D)``.
            group: Positions of the examples within the current batch and the group's number.
        """
        m = x
        for layer in self.layers:
            m = layer.forward(m, group)
        m = y
        for layer in reversed(self.layers):
            m = layer.backward(m, group)

    def end_iteration(self) -> None:
        """Recompute every weight marginal from the cavity and the visit's messages."""
        for layer in self.weight_layers:
            layer.end_iteration()

    # -------------------------------------------------------------------- prediction branch
    @torch.no_grad()
    def predict_messages(self, x: Tensor) -> NatGaussian:
        """Forward messages of the outputs (logits or regression outputs) for inputs ``x``."""
        m = x.to(dtype=self.dtype, device=self.device)
        for layer in self.layers[:-1]:
            m = layer.predict(m)
        return m

    @torch.no_grad()
    def predict(
        self, x: Tensor, *, chunk_size: int = PREDICT_CHUNK, flush_denormal: bool = True
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Predictive distribution (spec E.1).

        Args:
            x: Inputs ``(N, *input_shape)``, or ``(R, N, *input_shape)`` with one set of inputs
                per network when the network has replicas.
            chunk_size: Examples per forward pass.
            flush_denormal: Flush subnormal numbers to zero on the CPU during the forward
                passes, restoring the previous mode after (:func:`amp.runtime.flush_denormal`).

        Returns:
            Classification: probabilities ``(*lead, N, K)``. Regression: ``(mean, var)``, each
            ``(*lead, N, D)``, the variance including the observation noise.
        """
        n_dims = len(self.input_shape)
        if tuple(x.shape[x.dim() - n_dims :]) != self.input_shape or x.dim() not in (
            n_dims + 1,
            n_dims + 1 + len(self.lead),
        ):
            raise ValueError(
                f"inputs of shape {tuple(x.shape)} do not match the network's input shape "
                f"{self.input_shape} (expected (N, *input_shape)"
                + (", or (R, N, *input_shape) with one set per network)" if self.lead else ")")
            )
        axis = x.dim() - n_dims - 1
        chunks = x.split(chunk_size, dim=axis)
        with _flush_denormal(flush_denormal, self.device):
            outputs = [self.layers[-1].predict(self.predict_messages(c)) for c in chunks]
        axis = len(self.lead)  # outputs always carry the networks' axis first
        if self.task == "regression":
            return torch.cat([o[0] for o in outputs], axis), torch.cat(
                [o[1] for o in outputs], axis
            )
        return torch.cat(outputs, axis)

    # ------------------------------------------------------------------------- persistence
    def state_dict(self) -> dict:
        """Marginals and priors of every weight layer (enough to predict and to resume)."""
        state = {}
        for i, layer in enumerate(self.weight_layers):
            for name in ("prior_w", "prior_b", "q_w", "q_b"):
                g = getattr(layer, name)
                state[f"{i}.{name}"] = (g.tau.cpu(), g.rho.cpu())
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore the marginals and priors saved by :meth:`state_dict`."""
        for i, layer in enumerate(self.weight_layers):
            for name in ("prior_w", "prior_b", "q_w", "q_b"):
                tau, rho = state[f"{i}.{name}"]
                current = getattr(layer, name)
                if tuple(tau.shape) != tuple(current.shape):
                    raise ValueError(
                        f"saved {name} of weight layer {i} has shape {tuple(tau.shape)}, "
                        f"the network expects {tuple(current.shape)}"
                    )
                kw = {"dtype": self.dtype, "device": self.device}
                setattr(layer, name, NatGaussian(tau.to(**kw), rho.to(**kw)))
