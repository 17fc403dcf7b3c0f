"""Training by message passing, without double counting the data (spec C).

The training set is split into fixed contiguous batches. For every weight tensor the trainer
keeps one message per batch (:class:`amp.store.MessageStore`) and the running marginal
``Q = prior × Π_b store[b]``. A visit of batch ``b``:

1. hands every weight layer the batch's **cavity** ``Q / store[b]`` — the posterior without this
   batch — and resets all per-example messages to uniform;
2. runs ``its`` sweeps over the batch's examples in a shuffled order, group by group
   (:mod:`amp.schedules`): forward and backward messages, the marginals updated after each
   group;
3. replaces the stored message by the product of the visit's per-example messages, damped by an
   exponential moving average (:func:`ema_beta`), and updates ``Q``.

Every example's contribution lives in exactly one batch message, which is divided out before the
batch is seen again: revisiting the data refines the posterior instead of counting the data twice.
``Q`` is recomputed exactly at the end of every epoch.

Reference: ``Trainer``, ``train``, ``train_batch``, ``reset_for_batch`` and
``store_likelihood_messages`` in ``lib/factor_graph.jl`` (the arXiv/ICLR version, R1).

(Over 500 lines: one class, whose training loop, data checks and resumable state share the same
attributes; the within-batch schedules live in :mod:`amp.schedules`.)
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from amp import io, specs
from amp.gaussian import NatGaussian, ema
from amp.layers import Group
from amp.network import Network
from amp.runtime import DTYPES, Stopwatch, flush_denormal, resolve_dtype
from amp.schedules import DEFAULT_GROUP_SIZE, Schedule
from amp.store import MessageStore

__all__ = [
    "DEFAULT_GROUP_SIZE",
    "DivergenceError",
    "Schedule",
    "Trainer",
    "default_iterations",
    "ema_beta",
]

EMA_FLOOR = 0.9
"""Long-run weight of the new batch message in the EMA (reference: ``0.9 + 0.1·exp(−0.3(e−1))``)."""

EMA_DECAY = 0.3
"""Rate at which the EMA weight decays from 1 (epoch 1) to :data:`EMA_FLOOR`."""

CHECKPOINT_VERSION = 2
"""Format of :meth:`Trainer.state_dict`. Version 2 holds plain data only (layer specs as dicts,
dtypes by name), so that a checkpoint loads without running code from it; version 1 pickled
the layer-spec classes."""


class DivergenceError(RuntimeError):
    """Training produced a non-finite message or marginal."""


def ema_beta(epoch: int) -> float:
    """Weight of the new batch message in epoch ``epoch`` (1-based): ``0.9 + 0.1·exp(−0.3(e−1))``.

    Epoch 1 is undamped (β = 1); later epochs keep 2.6 % … 10 % of the old batch message.
    """
    return EMA_FLOOR + (1.0 - EMA_FLOOR) * math.exp(-EMA_DECAY * (epoch - 1))


def default_iterations(epoch: int) -> int:
    """Sweeps over a batch per visit in epoch ``epoch`` (1-based): ``ceil(epoch / 2)``."""
    return math.ceil(epoch / 2)


class Trainer:
    """Trains a :class:`~amp.network.Network` by message passing.

    Args:
        net: The network.
        batch_size: Examples per batch (fixed contiguous partition of the training set).
        schedule: Within-batch schedule (:class:`Schedule` or its name).
        group_size: Examples per group of the ``scaled`` and ``grouped`` schedules.
        iterations: Sweeps per batch visit: an int, or a function of the (1-based) epoch.
            Defaults to :func:`default_iterations`.
        damping: Use the EMA of :func:`ema_beta` on stored batch messages (``False``: β = 1).
        store_dtype: Dtype of the batch message store (default: the network's dtype).
        store_dir: Put the store in memory-mapped files under this directory instead of RAM.
        seed: Seed of the shuffling generator (ignored when ``generator`` is given).
        generator: Explicit CPU generator for the batch order and the example order.
        progress: Show a progress bar over batches.
        final_marginal: After :meth:`fit`, predict with the marginals of the last batch visit
            (``"last_batch"``, what the reference does) or with the trainer's ``Q``
            (``"store"``); they differ by (1 − β) of the last batch's message.
        flush_denormal: Flush subnormal numbers to zero on the CPU while training
            (:func:`amp.runtime.flush_denormal`: much faster in float32; the previous mode is
            restored after every :meth:`fit`, so other code in the process is unaffected).
        compiled: Compute the weight layers' backward messages (fully connected and
            convolutional) by the compiled exact kernel of :mod:`amp.factors.linear_fused` and
            the LeakyReLU messages by compiled kernels of the same functions
            (:func:`amp.runtime.call_compiled`; several times faster once compiled, the first
            groups of a process compile for seconds). Sets ``compiled`` on every layer of
            ``net`` that has the switch.
    """

    def __init__(
        self,
        net: Network,
        batch_size: int = 128,
        *,
        schedule: Schedule | str = Schedule.SCALED,
        group_size: int = DEFAULT_GROUP_SIZE,
        iterations: int | Callable[[int], int] | None = None,
        damping: bool = True,
        store_dtype: torch.dtype | None = None,
        store_dir: str | Path | None = None,
        seed: int = 0,
        generator: torch.Generator | None = None,
        progress: bool = False,
        final_marginal: str = "last_batch",
        flush_denormal: bool = True,
        compiled: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"invalid batch_size: {batch_size!r} (must be >= 1)")
        if group_size < 1:
            raise ValueError(f"invalid group_size: {group_size!r} (must be >= 1)")
        if final_marginal not in ("last_batch", "store"):
            raise ValueError(
                f"invalid final_marginal: {final_marginal!r} (use 'last_batch' or 'store')"
            )
        self.net = net
        self.batch_size = batch_size
        self.schedule = Schedule(schedule)
        self.group_size = group_size
        self.iterations = iterations if iterations is not None else default_iterations
        self.damping = damping
        self.store_dtype = store_dtype or net.dtype
        self.store_dir = None if store_dir is None else Path(store_dir)
        self.generator = generator if generator is not None else torch.Generator().manual_seed(seed)
        self.progress = progress
        self.final_marginal = final_marginal
        self.flush_denormal = flush_denormal
        self.compiled = compiled
        for layer in net.layers:
            if hasattr(layer, "compiled"):
                layer.compiled = compiled
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        self.num_examples: int | None = None
        self._example_axis = 0
        self.stores: list[tuple[MessageStore, MessageStore]] = []
        self.totals: list[tuple[NatGaussian, NatGaussian]] = []

    # ---------------------------------------------------------------------------- set-up
    @property
    def num_batches(self) -> int:
        """Number of batches of the bound training set."""
        if self.num_examples is None:
            raise RuntimeError("the trainer has not seen data yet; call fit first")
        return math.ceil(self.num_examples / self.batch_size)

    def _bind(self, num_examples: int) -> None:
        if self.num_examples is not None:
            if num_examples != self.num_examples:
                raise ValueError(
                    f"this trainer's message store belongs to a training set of "
                    f"{self.num_examples} examples, got {num_examples}; create a new Trainer "
                    "for different data"
                )
            return
        self.num_examples = num_examples
        self.stores = []
        for i, layer in enumerate(self.net.weight_layers):
            pair = []
            for name, prior in (("w", layer.prior_w), ("b", layer.prior_b)):
                directory = None if self.store_dir is None else self.store_dir / f"layer{i}"
                pair.append(
                    MessageStore(
                        self.num_batches,
                        tuple(prior.shape),
                        dtype=self.store_dtype,
                        compute_dtype=self.net.dtype,
                        device=self.net.device,
                        directory=None if name == "b" else directory,
                        name=name,
                    )
                )
            self.stores.append(tuple(pair))
        self._recompute_totals()

    def _recompute_totals(self) -> None:
        """``Q = prior × Π_b store[b]`` for every weight tensor, exactly."""
        self.totals = [
            (layer.prior_w.mul(sw.total()), layer.prior_b.mul(sb.total()))
            for layer, (sw, sb) in zip(self.net.weight_layers, self.stores, strict=True)
        ]

    def _iterations(self, epoch: int, override: int | Callable[[int], int] | None) -> int:
        rule = override if override is not None else self.iterations
        its = rule(epoch) if callable(rule) else rule
        if not isinstance(its, int) or its < 1:
            raise ValueError(f"invalid iterations for epoch {epoch}: {its!r} (must be >= 1)")
        return its

    # ---------------------------------------------------------------------------- training
    def fit(
        self,
        x: Tensor,
        y: Tensor,
        *,
        epochs: int = 1,
        iterations: int | Callable[[int], int] | None = None,
        callback: Callable[[Trainer], None] | None = None,
        checkpoint: str | Path | None = None,
    ) -> Trainer:
        """Train for ``epochs`` more epochs.

        Args:
            x: Inputs ``(N, *input_shape)``.
            y: Class labels ``(N,)`` (int64, 0-based) or regression targets ``(N, D)``.
            epochs: Number of epochs to run (the epoch counter continues across calls).
            iterations: Overrides the trainer's iterations rule for this call.
            callback: Called as ``callback(trainer)`` after every epoch (e.g. to evaluate).
            checkpoint: Save the training state here after every epoch (atomically).

        Returns:
            The trainer.

        Raises:
            ValueError: On malformed data.
            DivergenceError: If a message becomes non-finite (names layer, epoch and batch).
        """
        x, y = self._check_data(x, y)
        self._bind(x.shape[self._example_axis])
        with flush_denormal(self.flush_denormal, self.net.device):
            self._fit_epochs(x, y, epochs, iterations, callback, checkpoint)
        if self.final_marginal == "store":
            self.use_store_marginals()
        return self

    def _fit_epochs(
        self,
        x: Tensor,
        y: Tensor,
        epochs: int,
        iterations: int | Callable[[int], int] | None,
        callback: Callable[[Trainer], None] | None,
        checkpoint: str | Path | None,
    ) -> None:
        for _ in range(epochs):
            epoch = self.epoch + 1
            its = self._iterations(epoch, iterations)
            beta = ema_beta(epoch) if self.damping else 1.0
            order = torch.randperm(self.num_batches, generator=self.generator)
            bar = tqdm(
                order.tolist(), desc=f"epoch {epoch}", disable=not self.progress, leave=False
            )
            with Stopwatch(self.net.device) as watch:
                for batch in bar:
                    try:
                        self._visit(batch, x, y, its, beta, epoch)
                    except DivergenceError as err:
                        raise DivergenceError(f"{err}; {self._kept(checkpoint)}") from None
                    except torch.linalg.LinAlgError as err:  # degenerate messages in a solve
                        raise DivergenceError(
                            f"a linear solve failed at epoch {epoch}, batch {batch} ({err}). "
                            "Check the inputs' scale (normalise them), or use the 'sequential' "
                            f"schedule; {self._kept(checkpoint)}"
                        ) from err
                self._recompute_totals()
            self.epoch = epoch
            seconds = watch.seconds
            self.history.append({"epoch": epoch, "iterations": its, "seconds": seconds})
            if callback is not None:
                callback(self)
            if checkpoint is not None:
                self.save(checkpoint)

    def _visit(self, batch: int, x: Tensor, y: Tensor, its: int, beta: float, epoch: int) -> None:
        lo = batch * self.batch_size
        hi = min(lo + self.batch_size, self.num_examples)
        axis = self._example_axis
        xb, yb = x.narrow(axis, lo, hi - lo), y.narrow(axis, lo, hi - lo)
        size = hi - lo
        combiner = self.schedule.combiner(self.group_size)
        for layer, (sw, sb), (qw, qb) in zip(
            self.net.weight_layers, self.stores, self.totals, strict=True
        ):
            cavity_w, cavity_b = self._cavity(qw, sw.get(batch)), self._cavity(qb, sb.get(batch))
            layer.begin_visit(cavity_w, cavity_b, keep_messages=its > 1, combiner=combiner)
        order = torch.randperm(size, generator=self.generator).to(x.device)
        length = self.schedule.group_length(size, self.group_size)
        groups = [Group(idx, k) for k, idx in enumerate(order.split(length))]
        self.net.begin_batch(size, len(groups))
        for _ in range(its):
            for group in groups:
                self.net.train_step(
                    xb.index_select(axis, group.idx), yb.index_select(axis, group.idx), group
                )
            self.net.end_iteration()
        for i, (layer, stores, totals) in enumerate(
            zip(self.net.weight_layers, self.stores, self.totals, strict=True)
        ):
            for store, total, new in zip(stores, totals, layer.visit_messages(), strict=True):
                if not new.is_finite():
                    raise DivergenceError(
                        f"non-finite messages in weight layer {i} ({layer.spec}) at epoch "
                        f"{epoch}, batch {batch} (examples {lo}..{hi - 1}). Check the inputs "
                        "for NaN/inf and their scale (normalise them), or use the 'sequential' "
                        "schedule"
                    )
                self._store_batch_message(store, total, batch, new, beta)

    def _kept(self, checkpoint: str | Path | None) -> str:
        """What is left on disk after a failed epoch (for error messages)."""
        if checkpoint is None or not Path(checkpoint).exists():
            return "no checkpoint was written"
        return f"the checkpoint of epoch {self.epoch} is kept at {checkpoint}"

    @staticmethod
    def _cavity(total: NatGaussian, stored: NatGaussian) -> NatGaussian:
        """The batch's cavity: the marginal without the batch's stored message."""
        return total.div(stored)

    @staticmethod
    def _store_batch_message(
        store: MessageStore, total: NatGaussian, batch: int, new: NatGaussian, beta: float
    ) -> None:
        """Replace the batch's stored message by the EMA of old and new; update the marginal."""
        old = store.get(batch)
        damped = ema(old, new, beta)
        total.tau.add_(damped.tau - old.tau)
        total.rho.add_(damped.rho - old.rho)
        store.set(batch, damped)

    def use_store_marginals(self) -> None:
        """Make every layer predict with the trainer's marginals ``Q``."""
        for layer, (qw, qb) in zip(self.net.weight_layers, self.totals, strict=True):
            layer.q_w, layer.q_b = qw.clone(), qb.clone()

    def _check_data(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Validate and convert the training data; set the axis of the examples.

        Data are shared by all networks (``(N, ...)``) or, for a network with replicas, may
        come one set per network (``(R, N, ...)``).
        """
        net = self.net
        n_dims = len(net.input_shape)
        if tuple(x.shape[x.dim() - n_dims :]) != net.input_shape or x.dim() not in (
            n_dims + 1,
            n_dims + 1 + len(net.lead),
        ):
            raise ValueError(
                f"inputs have shape {tuple(x.shape)}, the network expects {net.input_shape} "
                "per example"
            )
        axis = x.dim() - n_dims - 1
        if axis and tuple(x.shape[:axis]) != net.lead:
            raise ValueError(f"per-network inputs need leading shape {net.lead}, got {x.shape}")
        if x.shape[axis] == 0:
            raise ValueError("the training set is empty")
        if y.dim() <= axis or y.shape[: axis + 1] != x.shape[: axis + 1]:
            count = y.shape[axis] if y.dim() > axis else 0
            raise ValueError(
                f"{x.shape[axis]} inputs but {count} targets (target shape {tuple(y.shape)})"
            )
        self._example_axis = axis
        x = x.to(dtype=net.dtype, device=net.device)
        if not torch.isfinite(x).all():
            raise ValueError("the inputs contain NaN or infinite values; clean the data first")
        if net.task == "classification":
            if y.dtype.is_floating_point or y.dim() != axis + 1:
                raise ValueError("classification labels must be an integer tensor, one per example")
            k = getattr(net.specs[-2], "out_features", None)
            if int(y.min()) < 0 or (k is not None and int(y.max()) >= k):
                raise ValueError(
                    f"labels must lie in [0, {k}), got [{int(y.min())}, {int(y.max())}]"
                )
            y = y.to(device=net.device, dtype=torch.int64)
        else:
            y = y.to(dtype=net.dtype, device=net.device)
            if y.dim() == axis + 1:
                y = y.unsqueeze(-1)
            if not torch.isfinite(y).all():
                raise ValueError("the targets contain NaN or infinite values; clean the data first")
        return x, y

    # ------------------------------------------------------------------------- persistence
    def state_dict(self, snapshot_dir: Path | None = None) -> dict[str, Any]:
        """The whole training state at an epoch boundary."""
        return {
            "version": CHECKPOINT_VERSION,
            "specs": [specs.to_dict(layer) for layer in self.net.specs],
            "input_shape": self.net.input_shape,
            "dtype": _dtype_name(self.net.dtype),
            "network": self.net.state_dict(),
            "config": {
                "batch_size": self.batch_size,
                "schedule": self.schedule.value,
                "group_size": self.group_size,
                "damping": self.damping,
                "store_dtype": _dtype_name(self.store_dtype),
                "final_marginal": self.final_marginal,
            },
            "iterations": self.iterations if isinstance(self.iterations, int) else None,
            "epoch": self.epoch,
            "history": self.history,
            "num_examples": self.num_examples,
            "generator": self.generator.get_state(),
            "stores": [
                (sw.state(snapshot_dir and snapshot_dir / f"layer{i}"), sb.state())
                for i, (sw, sb) in enumerate(self.stores)
            ],
        }

    def save(self, path: str | Path) -> None:
        """Save the training state atomically (call at epoch boundaries).

        A disk-backed store is copied to a new directory ``<path>.store/epoch<e>-<random>/``
        first (new even when the same epoch is saved again); older copies are removed only
        after the new checkpoint is in place, so a kill never leaves a checkpoint pointing at a
        half-written store.
        """
        path = Path(path)
        if self.store_dir is None:
            io.save_checkpoint(path, self.state_dict())
            return
        snapshots = path.with_name(path.name + ".store")
        snapshots.mkdir(parents=True, exist_ok=True)
        current = Path(tempfile.mkdtemp(prefix=f"epoch{self.epoch}-", dir=snapshots))
        io.save_checkpoint(path, self.state_dict(current))
        for old in snapshots.iterdir():
            if old != current:
                shutil.rmtree(old, ignore_errors=True)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        device: torch.device | str = "cpu",
        store_dir: str | Path | None = None,
        progress: bool = False,
        flush_denormal: bool = True,
        compiled: bool = False,
    ) -> Trainer:
        """Restore a trainer (and its network) saved by :meth:`save`.

        Args:
            path: Checkpoint file.
            device: Device to restore onto.
            store_dir: Directory for a disk-backed store (required if it was saved with one).
            progress: Show progress bars.
            flush_denormal: See :class:`Trainer` (a setting of the process, not saved).
            compiled: See :class:`Trainer` (likewise not saved).

        Raises:
            amp.io.UnsafeCheckpointError: If the file needs code to load (an earlier version's
                checkpoint, or a crafted file); nothing from it is run.
            amp.io.CorruptFileError: If the file (or a disk store's snapshot) is damaged, or it
                is not a trainer checkpoint of this version.
        """
        state = io.load_checkpoint(
            path, required_keys=("version", "specs", "network", "stores", "generator")
        )
        if state["version"] != CHECKPOINT_VERSION:
            raise io.CorruptFileError(
                f"checkpoint {path} has format version {state['version']!r}, this version of "
                f"the harness writes {CHECKPOINT_VERSION}; delete it and rerun to write it afresh"
            )
        config = dict(state["config"])
        try:
            layers = [specs.from_dict(entry) for entry in state["specs"]]
            dtype = resolve_dtype(state["dtype"])
            config["store_dtype"] = resolve_dtype(config["store_dtype"])
        except (ValueError, TypeError) as err:
            raise io.CorruptFileError(f"checkpoint {path}: {err}") from err
        net = Network(layers, state["input_shape"], dtype=dtype, device=device)
        net.load_state_dict(state["network"])
        trainer = cls(
            net,
            iterations=state["iterations"],
            store_dir=store_dir,
            progress=progress,
            flush_denormal=flush_denormal,
            compiled=compiled,
            **config,
        )
        trainer.generator.set_state(state["generator"])
        trainer.epoch = state["epoch"]
        trainer.history = list(state["history"])
        if state["num_examples"] is not None:
            trainer._bind(state["num_examples"])
            for (sw, sb), (w_state, b_state) in zip(trainer.stores, state["stores"], strict=True):
                try:
                    sw.load_state(w_state)
                    sb.load_state(b_state)
                except ValueError as err:  # a disk store's snapshot is missing or damaged
                    raise io.CorruptFileError(f"checkpoint {path}: {err}") from err
            trainer._recompute_totals()
        return trainer


def _dtype_name(dtype: torch.dtype) -> str:
    """The name of a dtype in :data:`amp.runtime.DTYPES` (checkpoints store dtypes by name)."""
    for name, value in DTYPES.items():
        if value == dtype:
            return name
    raise ValueError(f"cannot checkpoint dtype {dtype} (use one of {', '.join(DTYPES)})")
