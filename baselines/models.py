"""PyTorch modules built from the layer specs of :mod:`amp.specs`.

The baselines train exactly the network the message-passing method trains: the same tuple of
layer specs is turned into a :class:`torch.nn.Sequential`. Output specs (``Argmax``, ``Softmax``,
``Regression``) add no module; the model returns logits ``(N, K)`` for classification and the
regression mean ``(N, D)`` for regression, and :func:`likelihood_of` says which loss goes with it.

``build_model(..., replicas=R)`` builds R independent networks as one module, a
:class:`baselines.replicas.ReplicatedSequential`.

Example:
    >>> import torch
    >>> from amp import specs
    >>> model = build_model(specs.arch("lenet5"), (1, 28, 28), generator=torch.Generator())
    >>> model(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
from torch import nn

from amp import specs
from amp.padding import symmetric_pad2d
from baselines.padding import SymmetricPad2d

__all__ = [
    "Likelihood",
    "SymmetricPad2d",
    "build_model",
    "init_parameters",
    "likelihood_of",
    "symmetric_pad2d",
]


class Likelihood(NamedTuple):
    """Which loss the network's output spec asks for.

    Attributes:
        kind: ``"classification"`` (``Argmax`` or ``Softmax``) or ``"regression"``.
        noise_var: Known noise variance of a ``Regression`` output; ``None`` for classification.
    """

    kind: Literal["classification", "regression"]
    noise_var: float | None


def likelihood_of(layers: Sequence[specs.LayerSpec]) -> Likelihood:
    """Read the likelihood from the last layer spec.

    Args:
        layers: Layer specs ending in ``Argmax``, ``Softmax`` or ``Regression``.

    Returns:
        The likelihood kind and, for regression, the noise variance.

    Raises:
        ValueError: If the network has no output spec at its end.
    """
    last = layers[-1] if len(layers) else None
    if isinstance(last, specs.Argmax | specs.Softmax):
        return Likelihood("classification", None)
    if isinstance(last, specs.Regression):
        return Likelihood("regression", float(last.noise_var))
    raise ValueError(
        f"invalid layers: the last spec is {last!r}, not an output spec; "
        "end the network with Argmax(), Softmax() or Regression(noise_var)"
    )


def _weight_module(
    layer: specs.Linear | specs.Conv2d, in_shape: tuple[int, ...]
) -> list[nn.Module]:
    """Modules for one weight layer, allocated on the meta device (no memory, no random draws)."""
    if isinstance(layer, specs.Linear):
        return [nn.Linear(in_shape[0], layer.out_features, device="meta")]
    conv_padding = layer.padding if layer.padding_mode == "zeros" else 0
    conv = nn.Conv2d(
        in_shape[0], layer.out_channels, layer.kernel_size, padding=conv_padding, device="meta"
    )
    if layer.padding_mode == "symmetric" and layer.padding > 0:
        return [SymmetricPad2d(layer.padding), conv]
    return [conv]


def init_parameters(model: nn.Module, generator: torch.Generator) -> None:
    """Draw every Linear and Conv2d parameter from PyTorch's default distribution.

    PyTorch initialises a weight with ``kaiming_uniform_(a=sqrt(5))`` and its bias uniformly in
    ``±1/sqrt(fan_in)``; the Kaiming bound ``gain * sqrt(3 / fan_in)`` with
    ``gain = sqrt(2 / (1 + a**2)) = sqrt(1/3)`` is also ``1/sqrt(fan_in)``. So every weight and
    bias is drawn from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, ``fan_in`` being ``in_features``
    or ``in_channels * k * k``. The draws come from ``generator`` (module order, weight before
    bias) and never touch PyTorch's global random state.

    Args:
        model: Module whose Linear and Conv2d submodules are re-initialised in place.
        generator: Source of the draws; it must live on the parameters' device.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear | nn.Conv2d):
                bound = 1.0 / math.sqrt(module.weight[0].numel())
                module.weight.uniform_(-bound, bound, generator=generator)
                if module.bias is not None:
                    module.bias.uniform_(-bound, bound, generator=generator)


def build_model(
    layers: Sequence[specs.LayerSpec],
    input_shape: Sequence[int],
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    replicas: int | None = None,
) -> nn.Sequential:
    """Build the PyTorch network described by layer specs, or ``replicas`` independent copies.

    Linear maps to ``nn.Linear``; Conv2d to ``nn.Conv2d`` with stride 1 (zero padding inside the
    convolution, or a :class:`SymmetricPad2d` in front of it); LeakyReLU to ``nn.LeakyReLU``;
    MaxPool2d to ``nn.MaxPool2d`` (stride = window, incomplete windows dropped); Flatten to
    ``nn.Flatten`` (channel-first order). Output specs add nothing.

    Parameters are drawn on the CPU by :func:`init_parameters` and then moved to ``device``, so a
    generator gives the same network on every device. With ``replicas=R`` the R networks are
    drawn one after another from the same generator (network ``r`` equals the ``r``-th of R
    successive single builds) and stacked by :func:`baselines.replicas.stack_models`.

    Args:
        layers: Layer specs, e.g. ``amp.specs.arch("conv890k")``.
        input_shape: Shape of one input, ``(D,)`` or ``(C, H, W)``.
        generator: CPU generator for the initial parameters; ``None`` uses a new generator
            seeded with 0, so an unseeded call is still reproducible.
        dtype: Parameter dtype.
        device: Device of the returned module.
        replicas: Number R of independent networks in one
            :class:`~baselines.replicas.ReplicatedSequential`; ``None`` builds one network.

    Returns:
        The module; it maps ``(N, *input_shape)`` to ``(N, K)`` logits or ``(N, D)`` means, or
        with ``replicas=R`` inputs ``(N, *input_shape)`` or ``(R, N, *input_shape)`` to
        ``(R, N, K)`` or ``(R, N, D)``.

    Raises:
        ValueError: If the layers do not fit the input shape, no output spec ends them, or
            ``replicas`` is not a positive integer.
    """
    if replicas is not None:
        from baselines.replicas import check_replicas, stack_models  # replicas imports models

        check_replicas(replicas)
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        networks = [
            build_model(layers, input_shape, generator=generator, dtype=dtype)
            for _ in range(replicas)
        ]
        return stack_models(networks, input_shape).to(device)
    likelihood_of(layers)
    shapes = specs.output_shapes(layers, input_shape)
    in_shapes = [tuple(int(s) for s in input_shape), *shapes[:-1]]
    modules: list[nn.Module] = []
    for layer, in_shape in zip(layers, in_shapes, strict=True):
        if isinstance(layer, specs.Linear | specs.Conv2d):
            modules.extend(_weight_module(layer, in_shape))
        elif isinstance(layer, specs.LeakyReLU):
            modules.append(nn.LeakyReLU(layer.leak))
        elif isinstance(layer, specs.MaxPool2d):
            modules.append(nn.MaxPool2d(layer.kernel_size))
        elif isinstance(layer, specs.Flatten):
            modules.append(nn.Flatten())
    model = nn.Sequential(*modules).to(dtype).to_empty(device="cpu")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    init_parameters(model, generator)
    return model.to(device)
