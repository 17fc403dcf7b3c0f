"""One message-passing training run on a dataset, from configuration to a prediction artifact.

This is what the pipeline's training rule calls for the ``mp`` method: build the network from a
named architecture, train it with a resumable checkpoint, evaluate the test set after every epoch
(accuracy, NLL, ECE-15, the paper's ECE and confidence minus accuracy, for learning curves
against epochs and wall-clock), and return a
:class:`~harness.predictions.Predictions` with test (and optional OOD) predictions and timings.

:func:`check_run_inputs` is shared with :func:`harness.runs.baseline.run_baseline`: it refuses a
data set that does not fit the architecture, unnormalised inputs
(:func:`harness.data.check_input_scale`) and malformed OOD inputs before any training starts.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from amp import specs
from amp.io import identity_differences
from amp.network import Network
from amp.runtime import DTYPES, Stopwatch, resolve_device, resolve_dtype
from amp.trainer import DEFAULT_GROUP_SIZE, Schedule, Trainer
from harness import metrics
from harness.data import DataError, Dataset, check_input_scale
from harness.predictions import Predictions

__all__ = ["MPConfig", "check_run_inputs", "run_mp"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MPConfig:
    """Settings of a message-passing run (the ``mp`` section of the pipeline configuration).

    Attributes:
        epochs: Number of epochs.
        batch_size: Examples per batch.
        schedule: ``"grouped"``, ``"sequential"`` or ``"parallel"`` (see :class:`amp.Schedule`).
        group_size: Examples per group of the grouped schedule.
        iterations: Sweeps per batch visit; ``None`` for ``ceil(epoch / 2)``.
        dtype: ``"float64"`` (reference) or ``"float32"``.
        store_dtype: Dtype of the batch message store; ``None`` for ``dtype``.
        store_on_disk: Keep the batch message store in memory-mapped files (next to the
            checkpoint, or in a temporary directory) instead of memory: for networks whose
            store does not fit (``mlp5m``: 21 GB in float32 on 60,000 examples).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        flush_denormal: Flush subnormal numbers to zero on the CPU while MP trains and
            predicts (:func:`amp.runtime.flush_denormal`; the baselines are never affected).
        compiled: Compute the fully connected layers' backward messages by the compiled exact
            kernel (:mod:`amp.factors.linear_fused`; equal to the eager evaluation to rounding,
            several times faster).
        seed: Seed of the prior means and of the shuffling.
        evaluate_every_epoch: Score the test set after every epoch (not counted as training time).
        progress: Show progress bars.
    """

    epochs: int = 25
    batch_size: int = 128
    schedule: str = Schedule.SCALED.value
    group_size: int = DEFAULT_GROUP_SIZE
    iterations: int | None = None
    dtype: str = "float64"
    store_dtype: str | None = None
    store_on_disk: bool = False
    device: str = "cpu"
    flush_denormal: bool = True
    compiled: bool = True
    seed: int = 0
    evaluate_every_epoch: bool = True
    progress: bool = False

    def __post_init__(self) -> None:
        resolve_dtype(self.dtype)
        if self.store_dtype is not None and self.store_dtype not in DTYPES:
            raise ValueError(
                f"invalid store_dtype: {self.store_dtype!r} (use one of {', '.join(DTYPES)})"
            )
        if self.epochs < 1:
            raise ValueError(f"invalid epochs: {self.epochs!r} (must be >= 1)")


def check_run_inputs(
    dataset: Dataset,
    arch: str,
    layers: tuple[specs.LayerSpec, ...],
    ood_inputs: torch.Tensor | None = None,
) -> None:
    """Check that a data set (and OOD inputs) suit an architecture before training starts.

    Args:
        dataset: Training and test data.
        arch: Name of the architecture, for messages.
        layers: Its layer specs.
        ood_inputs: Out-of-distribution inputs ``(M, *input_shape)``, if any.

    Raises:
        ValueError: If the task or the number of classes does not match the architecture, or
            OOD inputs come with a regression task or have the wrong shape.
        harness.data.DataError: If inputs are non-finite or not normalised
            (:func:`harness.data.check_input_scale`).
    """
    task = "regression" if isinstance(layers[-1], specs.Regression) else "classification"
    if task != dataset.task:
        output = "Regression(noise_var)" if dataset.task == "regression" else "Argmax()"
        raise ValueError(
            f"architecture {arch!r} is a {task} network but data set {dataset.name!r} is a "
            f"{dataset.task} task; use an architecture that ends in {output}"
        )
    outputs = specs.output_shapes(layers, dataset.input_shape)[-1][0]
    if task == "classification" and dataset.num_classes > outputs:
        raise ValueError(
            f"data set {dataset.name!r} has {dataset.num_classes} classes but architecture "
            f"{arch!r} has {outputs} outputs; use an architecture with {dataset.num_classes}"
        )
    for split in ("train", "test"):
        check_input_scale(getattr(dataset, f"x_{split}"), f"{dataset.name} {split} inputs")
    if ood_inputs is None:
        return
    if task == "regression":
        raise ValueError("invalid ood_inputs: OOD predictions need a classification task")
    if tuple(ood_inputs.shape[1:]) != dataset.input_shape or ood_inputs.dim() < 2:
        raise ValueError(
            f"invalid ood_inputs: shape {tuple(ood_inputs.shape)}, expected "
            f"(M, {', '.join(map(str, dataset.input_shape))}) like the data set's inputs"
        )
    if not bool(torch.isfinite(ood_inputs).all()):
        raise DataError("ood_inputs contain NaN or inf; clean the OOD data first")


def _checkpoint_differences(
    trainer: Trainer, fresh: Network, config: MPConfig, store_dtype: torch.dtype | None, n: int
) -> list[str]:
    """What a loaded trainer has that this run would not: settings, layers, data size, seed."""
    saved = trainer.net
    wanted = {
        "layers": fresh.specs,
        "input_shape": fresh.input_shape,
        "dtype": fresh.dtype,
        "batch_size": config.batch_size,
        "schedule": Schedule(config.schedule),
        "group_size": config.group_size,
        "iterations": config.iterations,
        "store_dtype": store_dtype or fresh.dtype,
        "examples": n,
    }
    found = {
        "layers": saved.specs,
        "input_shape": saved.input_shape,
        "dtype": saved.dtype,
        "batch_size": trainer.batch_size,
        "schedule": trainer.schedule,
        "group_size": trainer.group_size,
        "iterations": trainer.iterations if isinstance(trainer.iterations, int) else None,
        "store_dtype": trainer.store_dtype,
        "examples": trainer.num_examples,
    }
    differ = identity_differences(wanted, found)
    if not {"layers", "input_shape", "dtype"} & set(differ):  # same shapes: compare priors
        priors = zip(fresh.weight_layers, saved.weight_layers, strict=True)
        if not all(torch.equal(a.prior_w.tau, b.prior_w.tau.to(a.prior_w.tau)) for a, b in priors):
            differ.append("seed")
    return differ


def _evaluate(net: Network, x: torch.Tensor, y: torch.Tensor, flush: bool) -> dict[str, float]:
    """Test scores after an epoch: :func:`harness.metrics.summary_metrics`, or RMSE/NLL."""
    if net.task == "regression":
        mean, var = net.predict(x, flush_denormal=flush)
        return {"rmse": metrics.rmse(mean, y), "nll": metrics.gaussian_nll(mean, var, y)}
    return metrics.summary_metrics(net.predict(x, flush_denormal=flush), y)


def run_mp(
    dataset: Dataset,
    arch: str,
    config: MPConfig,
    *,
    ood_inputs: torch.Tensor | None = None,
    checkpoint: str | Path | None = None,
    metadata: dict[str, Any] | None = None,
) -> Predictions:
    """Train a message-passing network and predict the test (and OOD) set.

    A run killed between epochs resumes from ``checkpoint`` when called again with the same
    arguments.

    Args:
        dataset: Training and test data (inputs normalised as wanted).
        arch: Named architecture (:func:`amp.specs.arch`).
        config: Run settings.
        ood_inputs: Out-of-distribution inputs to predict as well (classification only).
        checkpoint: File for the resumable training state (written after every epoch).
        metadata: Extra fields for the prediction artifact.

    Returns:
        Test predictions with per-epoch history and timings in ``metadata``.

    Raises:
        ValueError: If the data do not suit the architecture (:func:`check_run_inputs`), or
            ``checkpoint`` belongs to a run with other settings, layers, data or seed.
        amp.io.CorruptFileError: If ``checkpoint`` is damaged.
        amp.trainer.DivergenceError: If training produces non-finite messages.
    """
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype)
    store_dtype = resolve_dtype(config.store_dtype) if config.store_dtype else None
    layers = specs.arch(arch)
    check_run_inputs(dataset, arch, layers, ood_inputs)
    x_test = dataset.x_test.to(dtype=dtype, device=device)
    y_test = dataset.y_test.to(device)

    net = Network(layers, dataset.input_shape, seed=config.seed, dtype=dtype, device=device)
    store_dir, scratch = None, None
    if config.store_on_disk and checkpoint is not None:
        store_dir = Path(checkpoint).parent / "message_store"
    elif config.store_on_disk:
        scratch = tempfile.TemporaryDirectory(prefix="amp-message-store-")
        store_dir = Path(scratch.name)
    if checkpoint is not None and Path(checkpoint).exists():
        trainer = Trainer.load(
            checkpoint,
            device=device,
            store_dir=store_dir,
            progress=config.progress,
            flush_denormal=config.flush_denormal,
            compiled=config.compiled,
        )
        differ = _checkpoint_differences(trainer, net, config, store_dtype, len(dataset.x_train))
        differ += ["epochs"] if trainer.epoch > config.epochs else []
        if differ:
            raise ValueError(
                f"checkpoint {checkpoint} belongs to a different run (differs in {differ}); "
                "use another checkpoint path, or delete the file to start this run afresh"
            )
        _log.info("resuming from %s after epoch %d of %d", checkpoint, trainer.epoch, config.epochs)
    else:
        trainer = Trainer(
            net,
            config.batch_size,
            schedule=config.schedule,
            group_size=config.group_size,
            iterations=config.iterations,
            store_dtype=store_dtype,
            store_dir=store_dir,
            seed=config.seed + 1,
            progress=config.progress,
            flush_denormal=config.flush_denormal,
            compiled=config.compiled,
        )
    net = trainer.net

    def after_epoch(t: Trainer) -> None:
        if config.evaluate_every_epoch:
            t.history[-1]["test"] = _evaluate(net, x_test, y_test, config.flush_denormal)

    remaining = config.epochs - trainer.epoch
    if remaining > 0:
        trainer.fit(
            dataset.x_train,
            dataset.y_train,
            epochs=remaining,
            callback=after_epoch,
            checkpoint=checkpoint,
        )

    watch = Stopwatch(device)
    with watch:
        out = net.predict(x_test, flush_denormal=config.flush_denormal)
    predict_seconds = watch.seconds
    fields: dict[str, Any] = {}
    if net.task == "regression":
        fields.update(mean=out[0], var=out[1], targets=y_test)
    else:
        fields.update(probs=out, labels=y_test)
        if ood_inputs is not None:
            fields["probs_ood"] = net.predict(
                ood_inputs.to(dtype=dtype, device=device), flush_denormal=config.flush_denormal
            )
    info = {
        "method": "mp",
        "arch": arch,
        "dataset": dataset.name,
        "parameters": net.num_parameters(),
        "config": asdict(config),
        "history": trainer.history,
        "train_seconds": sum(h["seconds"] for h in trainer.history),
        "predict_seconds": predict_seconds,
    }
    info.update(metadata or {})
    if scratch is not None:
        scratch.cleanup()
    return Predictions(**{k: v.cpu() for k, v in fields.items()}, metadata=info)
