"""One baseline training run on a dataset, from configuration to prediction artifacts.

This is what the pipeline's training rules call for the ``adamw`` and ``ivon`` methods, the
counterpart of :func:`harness.runs.mp.run_mp`: build the network from a named architecture, train
it with a resumable checkpoint, score the test set after every epoch (outside the training
clock, for accuracy-against-wall-clock curves), and return
:class:`~harness.predictions.Predictions` with test (and optional OOD) predictions and timings.

IVON yields two artifacts from one training run, as in the reference evaluation (spec F.1):
``"ivon"``, the Bayesian model average over ``test_samples`` weight samples, and ``"ivon_mean"``,
the prediction at the mean weights ("IVON@mean"). Each artefact's per-epoch test scores
(:func:`harness.metrics.summary_metrics`: accuracy, NLL, ECE-15, the paper's ECE and confidence
minus accuracy) are those of its own predictive: the model average for ``"ivon"`` (the same
``test_samples``, a few seconds per epoch on 10,000 MLP inputs on a CPU thread), the mean
weights for ``"ivon_mean"``.

Example:
    >>> from harness.data import load_dataset
    >>> data = load_dataset("sine", dtype=torch.float32)
    >>> pred = run_baseline(data, "toy_regression", "adamw", BaselineConfig(epochs=2))
    >>> sorted(pred.metadata["history"][0]["test"])  # regression: RMSE and Gaussian NLL
    ['nll', 'rmse']
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from amp import specs
from amp.io import CorruptFileError, load_checkpoint, write_json
from amp.runtime import Stopwatch, resolve_device, resolve_dtype
from baselines.models import likelihood_of
from baselines.predict import (
    IVON_TEST_SAMPLES,
    predict_probs,
    predict_probs_ivon_bma,
    predict_regression,
    predict_regression_ivon_bma,
)
from baselines.train import EpochRecord, TrainConfig, TrainResult, _run_identity, train
from harness import metrics
from harness.data import Dataset
from harness.predictions import Predictions
from harness.runs.mp import check_run_inputs
from harness.runs.restore import restore_baseline

__all__ = ["METHODS", "BaselineConfig", "run_baseline"]

METHODS = ("adamw", "ivon")
"""Baseline methods :func:`run_baseline` trains."""

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaselineConfig:
    """Settings of a baseline run (the ``adamw`` / ``ivon`` sections of the pipeline config).

    The fields it shares with :class:`baselines.TrainConfig` take their defaults from there
    (optimiser settings left at ``None`` take the method's defaults, the reference script's
    values) and are passed on by name.

    Attributes:
        epochs: Number of epochs (also the cosine schedule's length).
        batch_size: Examples per step.
        dtype: ``"float32"`` or ``"float64"``: dtype of the inputs and weights.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        seed: Seed of the initial weights, the shuffling and IVON's weight noise.
        lr: Learning rate (``None``: method default).
        weight_decay: Weight decay (``None``: method default).
        ess: IVON's effective sample size (``None``: the training-set size).
        hess_init: IVON's initial Hessian.
        beta1: IVON's gradient momentum.
        beta2: IVON's Hessian momentum.
        mc_samples: IVON weight samples per training step.
        test_samples: IVON weight samples of the model average at prediction time.
        evaluate_every_epoch: Score the test set after every epoch (not counted as training).
        progress: Show a progress bar.
    """

    epochs: int = TrainConfig.epochs
    batch_size: int = TrainConfig.batch_size
    dtype: str = "float32"
    device: str = "cpu"
    seed: int = TrainConfig.seed
    lr: float | None = TrainConfig.lr
    weight_decay: float | None = TrainConfig.weight_decay
    ess: float | None = TrainConfig.ess
    hess_init: float = TrainConfig.hess_init
    beta1: float = TrainConfig.beta1
    beta2: float = TrainConfig.beta2
    mc_samples: int = TrainConfig.mc_samples
    test_samples: int = IVON_TEST_SAMPLES
    evaluate_every_epoch: bool = True
    progress: bool = False

    def __post_init__(self) -> None:
        resolve_dtype(self.dtype)
        if isinstance(self.test_samples, bool) or not (
            isinstance(self.test_samples, int) and self.test_samples >= 1
        ):
            raise ValueError(f"invalid test_samples: {self.test_samples!r} (must be >= 1)")

    def train_config(self, method: str, checkpoint: str | Path | None) -> TrainConfig:
        """The :class:`baselines.TrainConfig` of this run for ``method``: every shared field."""
        shared = {f.name for f in fields(TrainConfig)} & {f.name for f in fields(self)}
        settings = {name: getattr(self, name) for name in shared}
        return TrainConfig(**settings, method=method, checkpoint_path=checkpoint)


def _variants(method: str) -> dict[str, bool]:
    """Prediction artefacts of a method and whether each is IVON's model average."""
    return {"adamw": False} if method == "adamw" else {"ivon": True, "ivon_mean": False}


def _predict(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    x: torch.Tensor,
    config: BaselineConfig,
    noise_var: float | None,
    bma: bool,
    stopwatch: Stopwatch | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Test-time predictive: at the current weights, or IVON's model average when ``bma``."""
    samples, seed = config.test_samples, config.seed
    if noise_var is None:
        if bma:
            return predict_probs_ivon_bma(
                model, optimizer, x, samples, seed=seed, stopwatch=stopwatch
            )
        return predict_probs(model, x, stopwatch=stopwatch)
    if bma:
        return predict_regression_ivon_bma(
            model, optimizer, x, noise_var, samples, seed=seed, stopwatch=stopwatch
        )
    return predict_regression(model, x, noise_var, stopwatch=stopwatch)


def _score(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    x: torch.Tensor,
    y: torch.Tensor,
    config: BaselineConfig,
    noise_var: float | None,
    method: str,
) -> dict[str, dict[str, float]]:
    """Test scores of every artefact of ``method`` at the current state, by artefact name.

    Classification: :func:`harness.metrics.summary_metrics` (accuracy, NLL, ECE-15, the paper's
    ECE, confidence - accuracy); regression: RMSE and Gaussian NLL. IVON is scored both as its
    model average (``ivon``, ``test_samples`` weight samples) and at its mean (``ivon_mean``).
    """
    out = {}
    for name, bma in _variants(method).items():
        pred = _predict(model, optimizer, x, config, noise_var, bma)
        if noise_var is None:
            out[name] = metrics.summary_metrics(pred, y)
        else:
            mean, var = pred
            out[name] = {"rmse": metrics.rmse(mean, y), "nll": metrics.gaussian_nll(mean, var, y)}
    return out


class _History:
    """Per-epoch test scores by artefact, kept beside the checkpoint for a resumed run."""

    def __init__(self, checkpoint: str | Path | None) -> None:
        self.path = None if checkpoint is None else Path(f"{checkpoint}.scores.json")
        self.scores: dict[int, dict[str, dict[str, float]]] = {}
        if self.path is not None and self.path.exists() and Path(checkpoint).exists():
            try:
                self.scores = {int(k): v for k, v in json.loads(self.path.read_text()).items()}
            except (ValueError, AttributeError) as err:
                raise CorruptFileError(
                    f"per-epoch test scores {self.path} are corrupt ({err}); delete it and "
                    f"{checkpoint} to start this run afresh"
                ) from err

    def add(self, epoch: int, scores: dict[str, dict[str, float]]) -> None:
        self.scores[epoch] = scores
        if self.path is not None:
            write_json(self.path, {str(k): v for k, v in self.scores.items()})

    def merge(self, records: list[EpochRecord], artifact: str) -> list[dict[str, Any]]:
        """The history of one artefact: each epoch's record with that artefact's ``test``."""
        out = []
        for record in records:
            entry: dict[str, Any] = asdict(record)
            score = self.scores.get(record.epoch, {}).get(artifact)
            if score is not None:
                entry["test"] = score
            out.append(entry)
        return out


def run_baseline(
    dataset: Dataset,
    arch: str,
    method: str,
    config: BaselineConfig,
    *,
    ood_inputs: torch.Tensor | None = None,
    checkpoint: str | Path | None = None,
    metadata: dict[str, Any] | None = None,
) -> Predictions | dict[str, Predictions]:
    """Train an AdamW or IVON network and predict the test (and OOD) set.

    A run killed between epochs resumes from ``checkpoint`` when called again with the same
    arguments (the per-epoch test scores are kept in ``<checkpoint>.scores.json``).

    Args:
        dataset: Training and test data (inputs normalised as wanted; baselines use
            per-channel normalisation in the reference protocol).
        arch: Named architecture (:func:`amp.specs.arch`).
        method: ``"adamw"`` or ``"ivon"``.
        config: Run settings.
        ood_inputs: Out-of-distribution inputs ``(M, *input_shape)`` to predict as well
            (classification only).
        checkpoint: File for the resumable training state.
        metadata: Extra fields for the prediction artifacts.

    Returns:
        For ``"adamw"``: the test predictions. For ``"ivon"``: ``{"ivon": model average,
        "ivon_mean": prediction at the mean weights}``. Each carries the per-epoch history
        (``metadata["history"]``, entries ``epoch, loss, seconds, lr`` and ``test``),
        ``train_seconds`` (training steps only) and ``predict_seconds`` (test set only).

    Raises:
        ValueError: On an unknown method, data that do not suit the architecture or OOD inputs
            for a regression task (:func:`harness.runs.mp.check_run_inputs`), or a checkpoint
            of another run.
        amp.io.CorruptFileError: If the checkpoint or its scores file is damaged.
        baselines.train.DivergenceError: If a training loss is not finite.
    """
    if method not in METHODS:
        raise ValueError(f"invalid method: {method!r} (use one of {', '.join(METHODS)})")
    layers = specs.arch(arch)
    check_run_inputs(dataset, arch, layers, ood_inputs)
    likelihood = likelihood_of(layers)
    noise_var = None if likelihood.kind == "classification" else likelihood.noise_var
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype)
    x_train = dataset.x_train.to(dtype)
    x_test = dataset.x_test.to(dtype=dtype, device=device)
    y_test = dataset.y_test.to(device=device)
    if noise_var is not None:
        y_test = y_test.to(dtype)
    history = _History(checkpoint)
    y_train = dataset.y_train if noise_var is None else dataset.y_train.to(dtype)
    train_config = config.train_config(method, checkpoint)
    if checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint, required_keys=("identity", "epoch", "model"))
        epoch = state["epoch"]
        _log.info("resuming from %s after epoch %d of %d", checkpoint, epoch, config.epochs)
        same_run = state["identity"] == _run_identity(layers, x_train, y_train, train_config)
        if config.evaluate_every_epoch and same_run and epoch not in history.scores:
            # Killed between the checkpoint and its test score: score the saved state.
            model, optimizer = restore_baseline(
                layers, dataset.input_shape, state, dtype=dtype, device=device
            )
            scores = _score(model, optimizer, x_test, y_test, config, noise_var, method)
            history.add(epoch, scores)

    def after_epoch(state: TrainResult, record: EpochRecord) -> None:
        if config.evaluate_every_epoch:
            scores = _score(state.model, state.optimizer, x_test, y_test, config, noise_var, method)
            history.add(record.epoch, scores)

    result = train(layers, x_train, y_train, train_config, after_epoch=after_epoch)
    info = {
        "arch": arch,
        "dataset": dataset.name,
        "parameters": specs.count_parameters(layers, dataset.input_shape),
        "config": asdict(config),
        "train_seconds": result.total_seconds,
    }
    out: dict[str, Predictions] = {}
    for name, bma in _variants(method).items():
        watch = Stopwatch(device)
        model, optimizer = result.model, result.optimizer
        pred = _predict(model, optimizer, x_test, config, noise_var, bma, watch)
        fields: dict[str, Any]
        if noise_var is None:
            fields = {"probs": pred, "labels": y_test}
            if ood_inputs is not None:
                x_ood = ood_inputs.to(dtype=dtype, device=device)
                fields["probs_ood"] = _predict(model, optimizer, x_ood, config, noise_var, bma)
        else:
            fields = {"mean": pred[0], "var": pred[1], "targets": y_test}
        meta = {
            **info,
            "method": name,
            "trained_as": method,
            "history": history.merge(result.history, name),
            "predict_seconds": watch.seconds,
        }
        if bma:
            meta["test_samples"] = config.test_samples
        meta.update(metadata or {})
        out[name] = Predictions(**{k: v.cpu() for k, v in fields.items()}, metadata=meta)
    return out["adamw"] if method == "adamw" else out
