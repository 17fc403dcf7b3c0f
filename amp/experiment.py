"""One message-passing training run on a dataset, from configuration to a prediction artifact.

This is what the pipeline's training rule calls for the ``mp`` method: build the network from a
named architecture, train it with a resumable checkpoint, evaluate the test set after every epoch
(for accuracy-against-wall-clock curves), and return a :class:`~amp.predictions.Predictions` with
test (and optional OOD) predictions and timings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from amp import metrics, specs
from amp.data import Dataset
from amp.network import Network
from amp.predictions import Predictions
from amp.runtime import Stopwatch, resolve_device
from amp.trainer import Trainer

__all__ = ["MPConfig", "run_mp"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


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
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        seed: Seed of the prior means and of the shuffling.
        evaluate_every_epoch: Score the test set after every epoch (not counted as training time).
        progress: Show progress bars.
    """

    epochs: int = 25
    batch_size: int = 128
    schedule: str = "scaled"
    group_size: int = 16
    iterations: int | None = None
    dtype: str = "float64"
    store_dtype: str | None = None
    device: str = "cpu"
    seed: int = 0
    evaluate_every_epoch: bool = True
    progress: bool = False

    def __post_init__(self) -> None:
        if self.dtype not in _DTYPES:
            raise ValueError(f"invalid dtype: {self.dtype!r} (use 'float32' or 'float64')")
        if self.store_dtype is not None and self.store_dtype not in _DTYPES:
            raise ValueError(f"invalid store_dtype: {self.store_dtype!r}")
        if self.epochs < 1:
            raise ValueError(f"invalid epochs: {self.epochs!r} (must be >= 1)")


def _evaluate(net: Network, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    if net.task == "regression":
        mean, var = net.predict(x)
        return {"rmse": metrics.rmse(mean, y), "nll": metrics.gaussian_nll(mean, var, y)}
    probs = net.predict(x)
    return {"accuracy": metrics.accuracy(probs, y), "nll": metrics.nll(probs, y)}


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
    """
    device = resolve_device(config.device)
    dtype = _DTYPES[config.dtype]
    store_dtype = _DTYPES[config.store_dtype] if config.store_dtype else None
    layers = specs.arch(arch)
    x_test = dataset.x_test.to(dtype=dtype, device=device)
    y_test = dataset.y_test.to(device)

    if checkpoint is not None and Path(checkpoint).exists():
        trainer = Trainer.load(checkpoint, device=device, progress=config.progress)
    else:
        net = Network(layers, dataset.input_shape, seed=config.seed, dtype=dtype, device=device)
        trainer = Trainer(
            net,
            config.batch_size,
            schedule=config.schedule,
            group_size=config.group_size,
            iterations=config.iterations,
            store_dtype=store_dtype,
            seed=config.seed + 1,
            progress=config.progress,
        )
    net = trainer.net

    def after_epoch(t: Trainer) -> None:
        if config.evaluate_every_epoch:
            t.history[-1]["test"] = _evaluate(net, x_test, y_test)

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
        out = net.predict(x_test)
    predict_seconds = watch.seconds
    fields: dict[str, Any] = {}
    if net.task == "regression":
        fields.update(mean=out[0], var=out[1], targets=y_test)
    else:
        fields.update(probs=out, labels=y_test)
        if ood_inputs is not None:
            fields["probs_ood"] = net.predict(ood_inputs.to(dtype=dtype, device=device))
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
    return Predictions(**{k: v.cpu() for k, v in fields.items()}, metadata=info)
