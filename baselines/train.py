"""AdamW and IVON trainers for the baseline networks, with resumable checkpoints.

Both methods follow the reference CIFAR-10 baseline script (``cifar10_exp.py``, see the algorithm
spec, section F.1): batch 128, ``CosineAnnealingLR(T_max=epochs)`` stepped once per epoch, no
augmentation, cross-entropy for classification. AdamW runs at ``torch.optim.AdamW``'s defaults;
IVON runs ``ivon.IVON(params, lr=0.1, ess=len(train set))`` with one Monte Carlo sample per step.
One deliberate difference: the reference script shuffled the training set only on CUDA; here the
order is always shuffled, by a seeded generator.

``TrainConfig(replicas=R)`` trains R independent networks together (:mod:`baselines.replicas`
explains why this equals R separate runs) on shared data ``(N, ...)`` or on one data set per
network ``(R, N, ...)``. The loss is the sum over networks of each network's mean loss over its
batch; all networks see the same shuffled order, and ``ess`` defaults to the per-network ``N``.
A non-finite loss in any network stops the run.

Example:
    >>> from amp import specs
    >>> x, y = torch.randn(64, 2), torch.randint(0, 2, (64,))
    >>> layers = (specs.Linear(8), specs.LeakyReLU(), specs.Linear(2), specs.Argmax())
    >>> result = train(layers, x, y, TrainConfig(method="adamw", epochs=2, progress=False))
    >>> len(result.history)
    2
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import ivon
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from amp import specs
from amp.io import identity_differences, load_checkpoint, save_checkpoint
from amp.runtime import Stopwatch, resolve_device
from baselines.models import Likelihood, build_model, likelihood_of

__all__ = ["DivergenceError", "EpochRecord", "TrainConfig", "TrainResult", "train"]

ADAMW_LR = 1e-3
"""AdamW learning rate: the ``torch.optim.AdamW`` default, which the reference script used."""
ADAMW_WEIGHT_DECAY = 1e-2
"""AdamW decoupled weight decay: the ``torch.optim.AdamW`` default."""
IVON_LR = 0.1
"""IVON learning rate of the reference script (``ivon.IVON(params, lr=0.1, ess=50000)``)."""
IVON_WEIGHT_DECAY = 1e-4
"""IVON prior precision: the ``ivon.IVON`` default (it is not decoupled AdamW decay)."""

_NOT_IDENTITY = ("device", "progress", "checkpoint_path", "checkpoint_every")
_CHECKPOINT_KEYS = (
    "identity",
    "epoch",
    "history",
    "model",
    "optimizer",
    "scheduler",
    "shuffle_rng",
    "ivon_current_step",
    "torch_rng",
    "cuda_rng",
)


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss."""


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one baseline run.

    Attributes:
        method: ``"adamw"`` or ``"ivon"``.
        epochs: Number of passes over the training set (also the cosine schedule's ``T_max``).
        batch_size: Examples per step; the last batch of an epoch may be smaller.
        lr: Initial learning rate; ``None`` uses the method's default (:data:`ADAMW_LR`,
            :data:`IVON_LR`).
        weight_decay: ``None`` uses :data:`ADAMW_WEIGHT_DECAY` or :data:`IVON_WEIGHT_DECAY`.
        ess: IVON's effective sample size; ``None`` uses the training-set size.
        hess_init: IVON's initial Hessian (``ivon.IVON`` default 1.0).
        beta1: IVON's gradient momentum (default 0.9).
        beta2: IVON's Hessian momentum (default 0.99999).
        clip_radius: IVON's element-wise update clip (default: none).
        mc_samples: IVON weight samples per step (the reference ran 1).
        seed: Seeds the initial weights, the shuffling and IVON's weight noise.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        progress: Show a tqdm progress bar.
        checkpoint_path: Where to save and resume the run; ``None`` disables checkpoints.
        checkpoint_every: Save every this many epochs (and always after the last one).
        replicas: Train this many independent networks together (module docstring); ``None``
            trains one plain network.
    """

    method: Literal["adamw", "ivon"] = "adamw"
    epochs: int = 25
    batch_size: int = 128
    lr: float | None = None
    weight_decay: float | None = None
    ess: float | None = None
    hess_init: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.99999
    clip_radius: float = math.inf
    mc_samples: int = 1
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    checkpoint_path: str | Path | None = None
    checkpoint_every: int = 1
    replicas: int | None = None

    def __post_init__(self) -> None:
        if self.method not in ("adamw", "ivon"):
            raise ValueError(f"invalid method: {self.method!r} (use 'adamw' or 'ivon')")
        for name in ("epochs", "batch_size", "mc_samples", "checkpoint_every", "replicas"):
            value = getattr(self, name)
            if name == "replicas" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"invalid {name}: {value!r} (must be a positive integer)")
        for name in ("lr", "ess", "hess_init", "clip_radius"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"invalid {name}: {value!r} (must be positive)")
        if self.weight_decay is not None and not self.weight_decay >= 0:
            raise ValueError(f"invalid weight_decay: {self.weight_decay!r} (must be >= 0)")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"invalid {name}: {getattr(self, name)!r} (must be in [0, 1])")

    @property
    def resolved_lr(self) -> float:
        """The learning rate actually used."""
        if self.lr is not None:
            return self.lr
        return ADAMW_LR if self.method == "adamw" else IVON_LR

    @property
    def resolved_weight_decay(self) -> float:
        """The weight decay actually used."""
        if self.weight_decay is not None:
            return self.weight_decay
        return ADAMW_WEIGHT_DECAY if self.method == "adamw" else IVON_WEIGHT_DECAY


@dataclass(frozen=True)
class EpochRecord:
    """What one epoch did.

    Attributes:
        epoch: Epoch number, starting at 1.
        loss: Mean training loss over the epoch's examples (for IVON: at the sampled weights);
            with replicas, also averaged over the networks.
        seconds: Wall-clock time of the epoch's steps (device synchronised).
        lr: Learning rate used during the epoch.
    """

    epoch: int
    loss: float
    seconds: float
    lr: float


@dataclass
class TrainResult:
    """A trained baseline.

    Attributes:
        model: The network at its final (for IVON: mean) weights.
        optimizer: The optimizer; IVON's is needed to sample weights at prediction.
        scheduler: The learning-rate schedule.
        likelihood: Loss kind and regression noise variance.
        config: The configuration of the run.
        history: One record per epoch, resumed epochs included.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    likelihood: Likelihood
    config: TrainConfig
    history: list[EpochRecord] = field(default_factory=list)

    @property
    def total_seconds(self) -> float:
        """Training time summed over all epochs."""
        return sum(record.seconds for record in self.history)


def _stream_seeds(seed: int) -> tuple[int, int, int]:
    """Independent seeds for the initial weights, the shuffling and IVON's weight noise."""
    init, shuffle, noise = np.random.SeedSequence(seed).generate_state(3)
    return int(init), int(shuffle), int(noise)


def _per_network(
    x: torch.Tensor, y: torch.Tensor, likelihood: Likelihood, replicas: int | None
) -> bool:
    """Whether ``x, y`` hold one data set per network, ``(R, N, ...)``, rather than shared data."""
    if replicas is None or y.dim() != (2 if likelihood.kind == "classification" else 3):
        return False
    if x.dim() < 3 or len(x) != replicas or len(y) != replicas:
        raise ValueError(
            f"invalid x, y: shapes {tuple(x.shape)} and {tuple(y.shape)}; one data set per "
            f"network needs x of shape ({replicas}, N, ...) and y of shape ({replicas}, N, ...), "
            "or pass shared data (N, ...)"
        )
    return True


def _check_data(x: torch.Tensor, y: torch.Tensor, likelihood: Likelihood, outputs: int) -> None:
    if not x.is_floating_point():
        raise ValueError(f"invalid x: dtype {x.dtype} (use a floating-point tensor)")
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"invalid x, y: {len(x)} inputs and {len(y)} targets (need equal, > 0)")
    if likelihood.kind == "classification":
        if y.dtype != torch.int64 or y.dim() != 1:
            raise ValueError(
                f"invalid y: dtype {y.dtype}, shape {tuple(y.shape)}; classification needs "
                "int64 labels of shape (N,)"
            )
        if int(y.min()) < 0 or int(y.max()) >= outputs:
            raise ValueError(f"invalid y: labels must lie in [0, {outputs - 1}]")
    elif y.shape != (len(x), outputs) or not y.is_floating_point():
        raise ValueError(
            f"invalid y: dtype {y.dtype}, shape {tuple(y.shape)}; regression needs "
            f"floating-point targets of shape (N, {outputs})"
        )


def _loss_function(
    likelihood: Likelihood, replicated: bool = False
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Cross-entropy, or the Gaussian NLL with known noise (without its constant) per example.

    Averaged over the batch; for replicated outputs ``(R, B, K)`` and targets ``(B, ...)`` or
    ``(R, B, ...)``, averaged over each network's batch and summed over the networks.
    """
    noise_var = likelihood.noise_var
    if likelihood.kind == "classification" and not replicated:
        return F.cross_entropy
    if likelihood.kind == "classification":

        def replicated_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            target = target.expand(logits.shape[:-1])
            per_example = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none")
            return per_example.view(target.shape).mean(dim=-1).sum()

        return replicated_cross_entropy

    def gaussian_nll(mean: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        squares = (target - mean).square().sum(dim=-1)
        return 0.5 * (squares.mean(dim=-1).sum() if replicated else squares.mean()) / noise_var

    return gaussian_nll


def _make_optimizer(model: nn.Module, config: TrainConfig, n: int) -> torch.optim.Optimizer:
    if config.method == "adamw":
        return torch.optim.AdamW(
            model.parameters(), lr=config.resolved_lr, weight_decay=config.resolved_weight_decay
        )
    return ivon.IVON(
        model.parameters(),
        lr=config.resolved_lr,
        ess=float(n) if config.ess is None else config.ess,
        hess_init=config.hess_init,
        beta1=config.beta1,
        beta2=config.beta2,
        weight_decay=config.resolved_weight_decay,
        clip_radius=config.clip_radius,
    )


def _train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    xb: torch.Tensor,
    yb: torch.Tensor,
    mc_samples: int,
) -> float:
    """One optimiser step; returns the batch loss and skips the update if it is not finite."""
    if not isinstance(optimizer, ivon.IVON):
        optimizer.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        value = loss.item()
    else:
        value = 0.0
        for _ in range(mc_samples):
            with optimizer.sampled_params(train=True):
                optimizer.zero_grad()
                loss = loss_fn(model(xb), yb)
                loss.backward()
            value += loss.item() / mc_samples
    if math.isfinite(value):
        optimizer.step()
    return value


def _run_identity(
    layers: Sequence[specs.LayerSpec], x: torch.Tensor, y: torch.Tensor, config: TrainConfig
) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: hyperparameters, layers and data shapes."""
    identity = {key: value for key, value in asdict(config).items() if key not in _NOT_IDENTITY}
    identity |= {"lr": config.resolved_lr, "weight_decay": config.resolved_weight_decay}
    return identity | {"layers": repr(tuple(layers)), "x": tuple(x.shape), "y": tuple(y.shape)}


def _save(
    path: str | Path,
    identity: dict[str, Any],
    result: TrainResult,
    shuffle: torch.Generator,
    device: torch.device,
) -> None:
    state = {
        "identity": identity,
        "epoch": len(result.history),
        "history": [asdict(record) for record in result.history],
        "model": result.model.state_dict(),
        "optimizer": result.optimizer.state_dict(),
        "scheduler": result.scheduler.state_dict(),
        "shuffle_rng": shuffle.get_state(),
        "ivon_current_step": getattr(result.optimizer, "current_step", None),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }
    save_checkpoint(path, state)


def _resume(
    path: str | Path,
    identity: dict[str, Any],
    result: TrainResult,
    shuffle: torch.Generator,
    device: torch.device,
) -> None:
    """Load a checkpoint into ``result`` and ``shuffle`` after checking it belongs to this run."""
    state = load_checkpoint(path, required_keys=_CHECKPOINT_KEYS)
    differ = identity_differences(identity, state["identity"])
    if differ:
        raise ValueError(
            f"checkpoint {path} belongs to a different run (differs in {differ}); "
            "use another checkpoint_path, or delete the file to start this run afresh"
        )
    result.model.load_state_dict(state["model"])
    result.optimizer.load_state_dict(state["optimizer"])
    result.scheduler.load_state_dict(state["scheduler"])
    shuffle.set_state(state["shuffle_rng"])
    result.history = [EpochRecord(**record) for record in state["history"]]
    if isinstance(result.optimizer, ivon.IVON):
        # IVON keeps its Hessian and momentum in the param groups (loaded above, on the CPU) and
        # its step counter outside the state dict: without it the momentum debiasing 1 - beta1^t
        # would restart at t = 1.
        for group in result.optimizer.param_groups:
            for key in ("momentum", "hess"):
                group[key] = group[key].to(device)
        result.optimizer.current_step = state["ivon_current_step"]
        # The weight noise comes from the global generator (see `train`): continue its stream.
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state["cuda_rng"] is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)


def train(
    layers: Sequence[specs.LayerSpec],
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig | None = None,
    *,
    on_epoch_end: Callable[[nn.Module, EpochRecord], None] | None = None,
    after_epoch: Callable[[TrainResult, EpochRecord], None] | None = None,
) -> TrainResult:
    """Train a baseline network with AdamW or IVON, resuming from its checkpoint if one exists.

    A checkpoint is written atomically at epoch boundaries (model, optimizer, schedule, shuffling
    generator, IVON's step counter and the global random state, epoch and history). Calling
    ``train`` again with the same layers, data shapes and configuration continues from it; on the
    CPU the result is bit-identical to an uninterrupted run. A finished checkpoint is returned
    without training.

    Reproducibility limit: ``ivon-opt`` draws its weight noise from PyTorch's global generator
    and accepts no generator. An IVON run therefore seeds the global generator once when it
    starts (and restores its saved state when it resumes); this changes the caller's global
    random state.

    Args:
        layers: Layer specs ending in an output spec (see :func:`baselines.models.build_model`).
        x: Training inputs, shape ``(N, *input_shape)``; their dtype is the model's dtype. With
            ``config.replicas=R`` also ``(R, N, *input_shape)``, one data set per network.
        y: Labels ``(N,)`` (int64) for classification, targets ``(N, D)`` for regression; with
            one data set per network ``(R, N)`` or ``(R, N, D)``.
        config: Hyperparameters; ``None`` uses :class:`TrainConfig`'s defaults.
        on_epoch_end: Called as ``on_epoch_end(model, record)`` after each epoch's checkpoint.
        after_epoch: Called as ``after_epoch(result, record)`` after ``on_epoch_end``, with the
            whole :class:`TrainResult` so far (model, optimizer, schedule, history): for
            evaluations that need the optimizer, such as IVON's model average.

    Returns:
        The trained model, its optimizer and schedule, and the per-epoch history.

    Raises:
        ValueError: On malformed data, or a checkpoint that belongs to a different run.
        amp.io.CorruptFileError: If the checkpoint file is damaged.
        DivergenceError: If a batch loss is not finite (the last checkpoint stays on disk).
    """
    config = config or TrainConfig()
    likelihood = likelihood_of(layers)
    per_network = _per_network(x, y, likelihood, config.replicas)
    flat_x, flat_y = (x.flatten(0, 1), y.flatten(0, 1)) if per_network else (x, y)
    outputs = specs.output_shapes(layers, flat_x.shape[1:])[-1][0]
    _check_data(flat_x, flat_y, likelihood, outputs)
    n = y.shape[1] if per_network else len(y)
    networks = config.replicas or 1
    device = resolve_device(config.device)
    init_seed, shuffle_seed, noise_seed = _stream_seeds(config.seed)
    generator = torch.Generator().manual_seed(init_seed)
    model = build_model(
        layers,
        flat_x.shape[1:],
        generator=generator,
        dtype=x.dtype,
        device=device,
        replicas=config.replicas,
    )
    optimizer = _make_optimizer(model, config, n)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    result = TrainResult(model, optimizer, scheduler, likelihood, config)
    shuffle = torch.Generator().manual_seed(shuffle_seed)

    identity = _run_identity(layers, x, y, config)
    path = config.checkpoint_path
    if path is not None and Path(path).exists():
        _resume(path, identity, result, shuffle, device)
    elif config.method == "ivon":
        # ivon-opt samples weights with torch.randn and offers no generator argument, so the
        # global generator is seeded here, once per fresh IVON run.
        torch.manual_seed(noise_seed)

    x, y = x.to(device), y.to(device)
    loss_fn = _loss_function(likelihood, replicated=config.replicas is not None)
    batches = math.ceil(n / config.batch_size)
    first = len(result.history) + 1
    last_saved = len(result.history) if path is not None and first > 1 else None
    model.train()
    progress = tqdm(total=(config.epochs - first + 1) * batches, disable=not config.progress)
    with progress as bar:
        for epoch in range(first, config.epochs + 1):
            bar.set_description(f"{config.method} epoch {epoch}/{config.epochs}")
            lr = optimizer.param_groups[0]["lr"]
            total = 0.0
            with Stopwatch(device) as watch:
                order = torch.randperm(n, generator=shuffle).to(device)
                for batch in range(batches):
                    index = order[batch * config.batch_size : (batch + 1) * config.batch_size]
                    xb, yb = (x[:, index], y[:, index]) if per_network else (x[index], y[index])
                    loss = _train_step(model, optimizer, loss_fn, xb, yb, config.mc_samples)
                    loss /= networks  # the mean over networks of each network's batch loss
                    if not math.isfinite(loss):
                        kept = f"; checkpoint of epoch {last_saved} kept at {path}"
                        raise DivergenceError(
                            f"{config.method} diverged: loss {loss} at epoch {epoch}, batch "
                            f"{batch + 1}/{batches}; check the data for NaN/inf or lower the "
                            f"learning rate (lr={config.resolved_lr})"
                            + (kept if last_saved else "")
                        )
                    total += loss * len(index)
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
            scheduler.step()
            record = EpochRecord(epoch, total / n, watch.seconds, lr)
            result.history.append(record)
            if path is not None and (
                epoch % config.checkpoint_every == 0 or epoch == config.epochs
            ):
                _save(path, identity, result, shuffle, device)
                last_saved = epoch
            if on_epoch_end is not None:
                on_epoch_end(model, record)
            if after_epoch is not None:
                after_epoch(result, record)
    return result
