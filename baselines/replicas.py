"""R independent networks of one architecture, trained and evaluated together as one module.

Training many small baselines one after another wastes most of the time on per-step overhead.
A :class:`ReplicatedSequential` holds R networks whose parameters carry a leading axis ``R`` and
runs them at once: Linear layers as one batched matrix product (``torch.baddbmm``), Conv2d layers
as one grouped convolution with R groups. It maps shared inputs ``(N, *input_shape)`` or one input
batch per network ``(R, N, *input_shape)`` to outputs ``(R, N, K)``.

Training (``baselines.train.TrainConfig(replicas=R)``) minimises the sum over networks of each
network's mean batch loss. The networks share no parameter, so the gradient for network ``r`` is
the gradient of its own loss, and both optimisers update every parameter element from that
element's own statistics: AdamW's moments, and IVON's momentum, Hessian estimate, prior precision
and weight noise ``randn / sqrt(ess * (hess + weight_decay))`` (``ivon-opt``'s ``_update`` and
``_sample_params``, with the scalar ``lr``, ``ess`` and step counter shared). Each network
therefore follows its single run, up to the rounding of the batched products, as long as ``ess``
is the per-network training-set size (the default). Shared: the learning-rate schedule, the batch
order, and the random stream IVON's noise comes from, which the networks split element by element:
their noise draws are independent but differ from the draws of R separate runs.

Build one with ``baselines.models.build_model(..., replicas=R)``: network ``r`` equals the
``r``-th of R successive single builds from the same generator. :func:`stack_models` and
:func:`unstack_model` convert between R single networks and the replicated module.

:func:`coverage_config` holds the measured training protocol of the coverage study's baselines
(100 networks on the sine data). On a small shared CPU, ``torch.set_num_threads(1)`` ran it
several times faster than two threads, which only contend for the cores.

Example:
    >>> import torch
    >>> from amp import specs
    >>> from baselines.models import build_model
    >>> model = build_model(specs.arch("toy_regression"), (1,), replicas=5)
    >>> model(torch.zeros(7, 1)).shape
    torch.Size([5, 7, 1])
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from baselines.padding import SymmetricPad2d

__all__ = [
    "ReplicatedConv2d",
    "ReplicatedLinear",
    "ReplicatedMaxPool2d",
    "ReplicatedSequential",
    "check_replicas",
    "stack_models",
    "unstack_model",
]


def check_replicas(replicas: int) -> None:
    """Check a number of networks.

    Args:
        replicas: Number R of networks.

    Raises:
        ValueError: If ``replicas`` is not a positive integer.
    """
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise ValueError(
            f"invalid replicas: {replicas!r} (must be a positive integer, or None for one network)"
        )


class ReplicatedLinear(nn.Module):
    """R independent affine maps, ``y[r] = x[r] @ weight[r].T + bias[r]``.

    Args:
        replicas: Number R of networks.
        in_features: Input width I.
        out_features: Output width O.
        device: Device of the (uninitialised) parameters.
        dtype: Dtype of the parameters.

    Attributes:
        weight: Shape ``(R, O, I)``.
        bias: Shape ``(R, O)``.
    """

    def __init__(
        self,
        replicas: int,
        in_features: int,
        out_features: int,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        kwargs = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(replicas, out_features, in_features, **kwargs))
        self.bias = nn.Parameter(torch.empty(replicas, out_features, **kwargs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(R, N, I)`` to ``(R, N, O)`` with one batched matrix product."""
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))

    def extra_repr(self) -> str:
        """Shown in the module's printout."""
        replicas, out_features, in_features = self.weight.shape
        return f"replicas={replicas}, in_features={in_features}, out_features={out_features}"


class ReplicatedConv2d(nn.Module):
    """R independent stride-1 convolutions, run as one grouped convolution with R groups.

    Args:
        replicas: Number R of networks.
        in_channels: Input channels C.
        out_channels: Output channels O.
        kernel_size: Square kernel size k.
        padding: Zero padding on every side.
        device: Device of the (uninitialised) parameters.
        dtype: Dtype of the parameters.

    Attributes:
        weight: Shape ``(R, O, C, k, k)``.
        bias: Shape ``(R, O)``.
    """

    def __init__(
        self,
        replicas: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        padding: int = 0,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        kwargs = {"device": device, "dtype": dtype}
        shape = (replicas, out_channels, in_channels, kernel_size, kernel_size)
        self.weight = nn.Parameter(torch.empty(shape, **kwargs))
        self.bias = nn.Parameter(torch.empty(replicas, out_channels, **kwargs))
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(R, N, C, H, W)`` to ``(R, N, O, H', W')``."""
        replicas, n, channels, height, width = x.shape
        grouped = x.transpose(0, 1).reshape(n, replicas * channels, height, width)
        out = F.conv2d(
            grouped,
            self.weight.flatten(0, 1),
            self.bias.flatten(),
            padding=self.padding,
            groups=replicas,
        )
        return out.unflatten(1, (replicas, -1)).transpose(0, 1)

    def extra_repr(self) -> str:
        """Shown in the module's printout."""
        replicas, out_channels, in_channels, kernel_size, _ = self.weight.shape
        return (
            f"replicas={replicas}, in_channels={in_channels}, out_channels={out_channels}, "
            f"kernel_size={kernel_size}, padding={self.padding}"
        )


class ReplicatedMaxPool2d(nn.Module):
    """Max pooling (stride = window, incomplete windows dropped) of ``(R, N, C, H, W)``.

    Args:
        kernel_size: Square window size.
    """

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(R, N, C, H, W)`` to ``(R, N, C, H // k, W // k)``."""
        return F.max_pool2d(x.flatten(0, 1), self.kernel_size).unflatten(0, x.shape[:2])

    def extra_repr(self) -> str:
        """Shown in the module's printout."""
        return f"kernel_size={self.kernel_size}"


class ReplicatedSequential(nn.Sequential):
    """R independent networks of the same architecture, evaluated together.

    Its submodules sit at the positions of the single network's modules, so its state dict has
    the single network's keys with a leading axis R on every tensor.

    Args:
        replicas: Number R of networks.
        input_shape: Shape of one input, ``(D,)`` or ``(C, H, W)``.
        *modules: Replicated layers (:class:`ReplicatedLinear`, ...).
    """

    def __init__(self, replicas: int, input_shape: Sequence[int], *modules: nn.Module) -> None:
        super().__init__(*modules)
        check_replicas(replicas)
        self.replicas = replicas
        self.input_shape = tuple(int(size) for size in input_shape)

    def batch_axis(self, x: torch.Tensor) -> int:
        """Axis of ``x`` that indexes examples: 0 for shared inputs, 1 for one batch per network.

        Args:
            x: Inputs ``(N, *input_shape)`` or ``(R, N, *input_shape)``.

        Returns:
            0 or 1.

        Raises:
            ValueError: If ``x`` has neither shape.
        """
        if tuple(x.shape[1:]) == self.input_shape:
            return 0
        per_network = x.dim() == len(self.input_shape) + 2 and len(x) == self.replicas
        if per_network and tuple(x.shape[2:]) == self.input_shape:
            return 1
        raise ValueError(
            f"invalid x: shape {tuple(x.shape)}; the {self.replicas} networks take shared inputs "
            f"(N, *{self.input_shape}) or one batch per network ({self.replicas}, N, "
            f"*{self.input_shape})"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(N, *input_shape)`` or ``(R, N, *input_shape)`` to ``(R, N, K)``."""
        if self.batch_axis(x) == 0:
            x = x.expand(self.replicas, *x.shape)
        return super().forward(x)

    def extra_repr(self) -> str:
        """Shown in the module's printout."""
        return f"replicas={self.replicas}, input_shape={self.input_shape}"


def _replicate(module: nn.Module, replicas: int) -> nn.Module:
    """The replicated counterpart of one module of a single network (parameters uninitialised)."""
    if isinstance(module, nn.Linear):
        return ReplicatedLinear(replicas, module.in_features, module.out_features, device="meta")
    if isinstance(module, nn.Conv2d):
        padding = module.padding
        if module.stride != (1, 1) or not isinstance(padding, tuple) or len(set(padding)) != 1:
            raise ValueError(f"invalid module: {module!r} (only stride 1, square padding)")
        out_channels, in_channels, kernel_size, _ = module.weight.shape
        return ReplicatedConv2d(
            replicas, in_channels, out_channels, kernel_size, padding[0], device="meta"
        )
    if isinstance(module, nn.MaxPool2d):
        return ReplicatedMaxPool2d(module.kernel_size)
    if isinstance(module, nn.Flatten):
        return nn.Flatten(start_dim=2)
    if isinstance(module, nn.LeakyReLU | SymmetricPad2d):  # act on the last axes only
        return copy.deepcopy(module)
    raise ValueError(f"invalid module: {type(module).__name__} cannot be replicated")


def _single(module: nn.Module) -> nn.Module:
    """The single-network counterpart of one replicated module (parameters uninitialised)."""
    if isinstance(module, ReplicatedLinear):
        _, out_features, in_features = module.weight.shape
        return nn.Linear(in_features, out_features, device="meta")
    if isinstance(module, ReplicatedConv2d):
        _, out_channels, in_channels, kernel_size, _ = module.weight.shape
        return nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=module.padding, device="meta"
        )
    if isinstance(module, ReplicatedMaxPool2d):
        return nn.MaxPool2d(module.kernel_size)
    if isinstance(module, nn.Flatten):
        return nn.Flatten()
    return copy.deepcopy(module)


def stack_models(
    models: Sequence[nn.Sequential], input_shape: Sequence[int]
) -> ReplicatedSequential:
    """Stack networks of one architecture into a :class:`ReplicatedSequential`.

    Args:
        models: R networks from :func:`build_model` with the same layers, dtype and device.
        input_shape: Shape of one input of these networks.

    Returns:
        The replicated module; its network ``r`` has the parameters of ``models[r]`` (copied).

    Raises:
        ValueError: If ``models`` is empty or the networks differ in architecture.
    """
    if not models:
        raise ValueError("invalid models: empty sequence (stack at least one network)")
    template = models[0]
    replicated = ReplicatedSequential(
        len(models), input_shape, *(_replicate(module, len(models)) for module in template)
    )
    states = [model.state_dict() for model in models]
    if any(state.keys() != states[0].keys() for state in states):
        raise ValueError("invalid models: the networks differ in architecture")
    parameter = next(template.parameters())
    replicated.to_empty(device=parameter.device).to(parameter.dtype)
    replicated.load_state_dict({key: torch.stack([s[key] for s in states]) for key in states[0]})
    return replicated


def unstack_model(model: ReplicatedSequential, index: int) -> nn.Sequential:
    """Network ``index`` of a replicated module, as the plain module :func:`build_model` builds.

    Args:
        model: The replicated networks.
        index: Which network, in ``[0, R)``.

    Returns:
        A new single network holding copies of network ``index``'s parameters.

    Raises:
        ValueError: If ``index`` is out of range.
    """
    if not 0 <= index < model.replicas:
        raise ValueError(f"invalid index: {index!r} (must lie in [0, {model.replicas}))")
    single = nn.Sequential(*(_single(module) for module in model))
    parameter = next(model.parameters())
    single.to_empty(device=parameter.device).to(parameter.dtype)
    single.load_state_dict({key: value[index] for key, value in model.state_dict().items()})
    return single
