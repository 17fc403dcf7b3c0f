"""Layer specifications and the named architectures shared by every method.

A network is a tuple of frozen layer specs. The message-passing network (:mod:`amp.network`) and
the baselines (:mod:`baselines.models`) are both built from the same tuple, so all methods train
exactly the same architecture. Images are channel-first ``(C, H, W)``, as in PyTorch.

Example:
    >>> from amp import specs
    >>> layers = specs.arch("mlp")
    >>> specs.count_parameters(layers, input_shape=(1, 28, 28))
    269322
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

__all__ = [
    "ARCHITECTURES",
    "Argmax",
    "Conv2d",
    "Flatten",
    "LayerSpec",
    "LeakyReLU",
    "Linear",
    "MaxPool2d",
    "Regression",
    "SPEC_TYPES",
    "Softmax",
    "arch",
    "count_parameters",
    "from_dict",
    "output_shapes",
    "to_dict",
]


@dataclass(frozen=True)
class Linear:
    """Fully connected layer ``s = W^T x + b``.

    Args:
        out_features: Number of outputs ``d_out``.
        prior_var: Prior variance of every weight; ``None`` uses the formula of
            :func:`amp.priors.weight_prior_var`.
    """

    out_features: int
    prior_var: float | None = None

    def __post_init__(self) -> None:
        _check_positive_int("out_features", self.out_features)
        _check_optional_positive("prior_var", self.prior_var)


@dataclass(frozen=True)
class Conv2d:
    """2-D convolution with stride 1 (cross-correlation, as ``torch.nn.Conv2d``).

    Args:
        out_channels: Number of output channels.
        kernel_size: Side ``k`` of the square kernel.
        padding: Pixels added on every side of the input.
        padding_mode: ``"symmetric"`` mirrors the border including the edge pixel
            (``[1, 2, 3]`` padded by 2 gives ``[2, 1, 1, 2, 3, 3, 2]``), as the reference
            implementation does; ``"zeros"`` pads with zeros.
        prior_var: Prior variance override, as for :class:`Linear`.
    """

    out_channels: int
    kernel_size: int
    padding: int = 0
    padding_mode: Literal["symmetric", "zeros"] = "symmetric"
    prior_var: float | None = None

    def __post_init__(self) -> None:
        _check_positive_int("out_channels", self.out_channels)
        _check_positive_int("kernel_size", self.kernel_size)
        if self.padding < 0:
            raise ValueError(f"invalid padding: {self.padding!r} (must be >= 0)")
        if self.padding_mode not in ("symmetric", "zeros"):
            raise ValueError(
                f"invalid padding_mode: {self.padding_mode!r} (use 'symmetric' or 'zeros')"
            )
        _check_optional_positive("prior_var", self.prior_var)


@dataclass(frozen=True)
class LeakyReLU:
    """Leaky rectifier ``z = a`` for ``a > 0`` and ``z = leak * a`` otherwise."""

    leak: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 < self.leak <= 1.0:
            raise ValueError(f"invalid leak: {self.leak!r} (must be in (0, 1])")


@dataclass(frozen=True)
class MaxPool2d:
    """Non-overlapping max pooling (stride = kernel size, incomplete windows dropped)."""

    kernel_size: int

    def __post_init__(self) -> None:
        _check_positive_int("kernel_size", self.kernel_size)


@dataclass(frozen=True)
class Flatten:
    """Reshape ``(C, H, W)`` to ``(C * H * W,)``."""


@dataclass(frozen=True)
class Argmax:
    """Classification likelihood: the label's logit is the largest (noisy pairwise comparisons).

    Args:
        regularize: Add the ``N(+1, 0.1)`` / ``N(-1, 0.1)`` pseudo-observations on the target and
            non-target logits, as the reference CIFAR-10 and MNIST runs do.
    """

    regularize: bool = True


@dataclass(frozen=True)
class Softmax:
    """Softmax classification likelihood (probit-scaled softmax at prediction)."""


@dataclass(frozen=True)
class Regression:
    """Gaussian likelihood ``y ~ N(f(x), noise_var)`` with a fixed noise variance."""

    noise_var: float

    def __post_init__(self) -> None:
        _check_optional_positive("noise_var", self.noise_var)


LayerSpec = Linear | Conv2d | LeakyReLU | MaxPool2d | Flatten | Argmax | Softmax | Regression
OUTPUT_SPECS = (Argmax, Softmax, Regression)
WEIGHT_SPECS = (Linear, Conv2d)
SPEC_TYPES: dict[str, type] = {
    kind.__name__: kind
    for kind in (Linear, Conv2d, LeakyReLU, MaxPool2d, Flatten, Argmax, Softmax, Regression)
}
"""Every layer-spec class by name: the fixed table :func:`from_dict` rebuilds specs from."""


def _check_positive_int(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"invalid {name}: {value!r} (must be a positive integer)")


def _check_optional_positive(name: str, value: float | None) -> None:
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"invalid {name}: {value!r} (must be a positive number)")


def _lenet5() -> tuple[LayerSpec, ...]:
    return (
        Conv2d(6, 5, padding=2),
        LeakyReLU(),
        MaxPool2d(2),
        Conv2d(16, 5),
        LeakyReLU(),
        MaxPool2d(2),
        Flatten(),
        Linear(120),
        LeakyReLU(),
        Linear(84),
        LeakyReLU(),
        Linear(10),
        Argmax(),
    )


def _conv890k() -> tuple[LayerSpec, ...]:
    return (
        Conv2d(32, 3),
        LeakyReLU(),
        Conv2d(32, 3),
        LeakyReLU(),
        MaxPool2d(2),
        Conv2d(64, 3),
        LeakyReLU(),
        Conv2d(64, 3),
        LeakyReLU(),
        MaxPool2d(2),
        Flatten(),
        Linear(512),
        LeakyReLU(),
        Linear(10),
        Argmax(),
    )


def _mlp(width: int) -> tuple[LayerSpec, ...]:
    return (Flatten(), Linear(width), LeakyReLU(), Linear(width), LeakyReLU(), Linear(10), Argmax())


ARCHITECTURES: dict[str, tuple[tuple[LayerSpec, ...], tuple[int, ...]]] = {
    # name: (layers, the input shape the architecture is meant for)
    "toy_regression": (
        (Linear(32), LeakyReLU(), Linear(32), LeakyReLU(), Linear(1), Regression(0.05**2)),
        (1,),
    ),
    "mlp": (_mlp(256), (1, 28, 28)),
    "lenet5": (_lenet5(), (1, 28, 28)),
    "conv890k": (_conv890k(), (3, 32, 32)),
    "mlp5m": (_mlp(2000), (1, 28, 28)),
}
"""Named architectures with their intended input shapes.

* ``toy_regression``: 1→32→32→1 with LeakyReLU(0.1) and noise variance 0.05² (coverage study).
* ``mlp``: 784→256→256→10 (269,322 parameters), the reference MNIST MLP.
* ``lenet5``: LeNet-5 with LeakyReLU and max pooling (61,706 parameters).
* ``conv890k``: the reference CIFAR-10 CNN (890,410 parameters).
* ``mlp5m``: 784→2000→2000→10 (5,592,010 parameters), the "5.6 M-parameter MLP".
"""


def arch(name: str) -> tuple[LayerSpec, ...]:
    """Return the layer specs of a named architecture.

    Args:
        name: One of :data:`ARCHITECTURES`.

    Returns:
        The tuple of layer specs.

    Raises:
        ValueError: If the name is unknown (the message lists the known names).
    """
    try:
        return ARCHITECTURES[name][0]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"unknown architecture {name!r}; known: {known}") from None


def default_input_shape(name: str) -> tuple[int, ...]:
    """Input shape a named architecture is meant for (``(1,)``, ``(1, 28, 28)``, ...)."""
    arch(name)
    return ARCHITECTURES[name][1]


def output_shapes(layers: Sequence[LayerSpec], input_shape: Sequence[int]) -> list[tuple[int, ...]]:
    """Shape of every layer's output for one example (no batch dimension).

    Args:
        layers: Layer specs.
        input_shape: Shape of one input, ``(D,)`` or ``(C, H, W)``.

    Returns:
        One shape per layer; output specs (Argmax, Regression, ...) keep their input shape.

    Raises:
        ValueError: If a layer does not fit the shape it receives.
    """
    shape = tuple(int(s) for s in input_shape)
    shapes = []
    for index, layer in enumerate(layers):
        where = f"layer {index} ({type(layer).__name__})"
        if isinstance(layer, Linear):
            if len(shape) != 1:
                raise ValueError(f"{where} needs a flat input, got shape {shape}; add Flatten()")
            shape = (layer.out_features,)
        elif isinstance(layer, Conv2d):
            if len(shape) != 3:
                raise ValueError(f"{where} needs a (C, H, W) input, got shape {shape}")
            c, h, w = shape
            h_out = h + 2 * layer.padding - layer.kernel_size + 1
            w_out = w + 2 * layer.padding - layer.kernel_size + 1
            if h_out < 1 or w_out < 1:
                raise ValueError(f"{where}: kernel {layer.kernel_size} does not fit input {shape}")
            if layer.padding_mode == "symmetric" and layer.padding > min(h, w):
                raise ValueError(f"{where}: padding {layer.padding} exceeds input {shape}")
            shape = (layer.out_channels, h_out, w_out)
        elif isinstance(layer, MaxPool2d):
            if len(shape) != 3:
                raise ValueError(f"{where} needs a (C, H, W) input, got shape {shape}")
            c, h, w = shape
            k = layer.kernel_size
            if h < k or w < k:
                raise ValueError(f"{where}: window {k} does not fit input {shape}")
            shape = (c, h // k, w // k)
        elif isinstance(layer, Flatten):
            shape = (math.prod(shape),)
        elif isinstance(layer, OUTPUT_SPECS):
            if index != len(layers) - 1:
                raise ValueError(f"{where} is an output layer and must come last")
            if len(shape) != 1:
                raise ValueError(f"{where} needs a flat input, got shape {shape}")
        elif not isinstance(layer, LeakyReLU):
            raise ValueError(f"{where}: not a layer spec: {layer!r}")
        shapes.append(shape)
    return shapes


def count_parameters(layers: Sequence[LayerSpec], input_shape: Sequence[int]) -> int:
    """Number of weights and biases of a network.

    Args:
        layers: Layer specs.
        input_shape: Shape of one input.

    Returns:
        The parameter count (e.g. 890,410 for ``conv890k`` on ``(3, 32, 32)``).
    """
    total = 0
    shape = tuple(input_shape)
    for layer, out_shape in zip(layers, output_shapes(layers, input_shape), strict=True):
        if isinstance(layer, Linear):
            total += (shape[0] + 1) * layer.out_features
        elif isinstance(layer, Conv2d):
            total += (shape[0] * layer.kernel_size**2 + 1) * layer.out_channels
        shape = out_shape
    return total


def to_dict(layer: LayerSpec) -> dict[str, Any]:
    """A layer spec as plain data for checkpoints: its class name under ``"type"``, and its fields.

    ``Linear(32)`` becomes ``{"type": "Linear", "out_features": 32, "prior_var": None}``.

    Raises:
        ValueError: If ``layer`` is not one of :data:`SPEC_TYPES`.
    """
    name = type(layer).__name__
    if SPEC_TYPES.get(name) is not type(layer):
        raise ValueError(f"not a layer spec: {layer!r}")
    return {"type": name, **{field.name: getattr(layer, field.name) for field in fields(layer)}}


def from_dict(entry: Mapping[str, Any]) -> LayerSpec:
    """Rebuild a layer spec from :func:`to_dict`'s output (validated again by its class).

    Raises:
        ValueError: If the type is not one of :data:`SPEC_TYPES` or a field is unknown or invalid.
    """
    if not isinstance(entry, Mapping) or entry.get("type") not in SPEC_TYPES:
        known = ", ".join(SPEC_TYPES)
        raise ValueError(f"not a layer spec entry: {entry!r} (type must be one of {known})")
    kind = SPEC_TYPES[entry["type"]]
    values = {key: value for key, value in entry.items() if key != "type"}
    unknown = sorted(set(values) - {field.name for field in fields(kind)})
    if unknown:
        raise ValueError(f"layer spec {entry['type']} has no field(s) {unknown}")
    try:
        return kind(**values)
    except TypeError as err:  # a required field is missing
        raise ValueError(f"invalid {entry['type']} spec {entry!r}: {err}") from None
