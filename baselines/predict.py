"""Predictive distributions of the baselines: point estimates and IVON's Bayesian model average.

Classification returns probabilities ``(N, K)``; regression returns a Gaussian predictive as
``(mean, var)``, both ``(N, D)``. The IVON model average follows the reference evaluation
(spec F.1): the mean of the softmax over 100 weight samples ("IVON"), against the softmax at the
mean weights ("IVON@mean", which is :func:`predict_probs`).

Every function runs in batches without gradients, returns tensors on the device of ``x`` and,
when given a :class:`amp.runtime.Stopwatch`, adds its wall-clock time to it.

Every function also takes R networks trained together (a
:class:`~baselines.replicas.ReplicatedSequential`) with shared inputs ``(M, ...)`` or one input
batch per network ``(R, M, ...)``, and then returns ``(R, M, K)`` or ``(R, M, D)``: per network,
the same quantity as for a single network. In IVON's model average every weight sample draws
independent noise for each network, so network ``r``'s average is over its own posterior.

Reproducibility limit: ``ivon-opt`` draws weight samples from PyTorch's global generator and
accepts no generator. The model-average functions therefore take a ``seed``, seed the global
generator inside :func:`torch.random.fork_rng` and leave the caller's global state as it was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import ivon
import torch
from torch import nn

from amp.runtime import Stopwatch
from baselines.replicas import ReplicatedSequential

__all__ = [
    "predict_probs",
    "predict_probs_ivon_bma",
    "predict_regression",
    "predict_regression_ivon_bma",
]

IVON_TEST_SAMPLES = 100
"""Weight samples of IVON's model average in the reference evaluation (``--test-samples 100``)."""


def _check(x: torch.Tensor, batch_size: int, samples: int = 1) -> None:
    if not x.is_floating_point() or x.dim() < 2 or len(x) == 0:
        raise ValueError(
            f"invalid x: dtype {x.dtype}, shape {tuple(x.shape)} "
            "(need a non-empty floating-point batch (N, ...))"
        )
    if batch_size < 1:
        raise ValueError(f"invalid batch_size: {batch_size!r} (must be a positive integer)")
    if samples < 1:
        raise ValueError(f"invalid samples: {samples!r} (must be a positive integer)")


def _forward(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Model outputs for ``x`` in batches, on the device of ``x`` and in the model's dtype."""
    parameter = next(model.parameters())
    replicated = isinstance(model, ReplicatedSequential)
    axis = model.batch_axis(x) if replicated else 0
    outputs = [
        model(chunk.to(parameter.device, parameter.dtype)).to(x.device)
        for chunk in x.split(batch_size, dim=axis)
    ]
    return torch.cat(outputs, dim=1 if replicated else 0)


@contextlib.contextmanager
def _predicting(model: nn.Module, stopwatch: Stopwatch | None) -> Iterator[None]:
    """No gradients, evaluation mode (restored afterwards) and optional timing."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), stopwatch or contextlib.nullcontext():
            yield
    finally:
        model.train(was_training)


def _sample_average(
    model: nn.Module,
    optimizer: ivon.IVON,
    samples: int,
    seed: int,
    predict_once: Callable[[], torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and population variance of ``predict_once()`` over IVON weight samples (Welford)."""
    if not isinstance(optimizer, ivon.IVON):
        raise ValueError(
            f"invalid optimizer: {type(optimizer).__name__} (the model average needs the "
            "ivon.IVON optimizer the model was trained with)"
        )
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        mean = m2 = None
        for count in range(1, samples + 1):
            with optimizer.sampled_params():
                value = predict_once()
            if mean is None:
                mean, m2 = value.clone(), torch.zeros_like(value)
            else:
                delta = value - mean
                mean += delta / count
                m2 += delta * (value - mean)
    return mean, m2 / samples


def predict_probs(
    model: nn.Module,
    x: torch.Tensor,
    batch_size: int = 1000,
    *,
    stopwatch: Stopwatch | None = None,
) -> torch.Tensor:
    """Softmax probabilities at the current weights (AdamW; IVON at its mean, "IVON@mean").

    Args:
        model: Classifier returning logits ``(N, K)``.
        x: Inputs, shape ``(N, ...)``.
        batch_size: Examples per forward pass.
        stopwatch: If given, the prediction's time is added to it.

    Returns:
        Probabilities, shape ``(N, K)``; every row sums to 1.

    Raises:
        ValueError: On malformed ``x`` or ``batch_size``.
    """
    _check(x, batch_size)
    with _predicting(model, stopwatch):
        return torch.softmax(_forward(model, x, batch_size), dim=-1)


def predict_probs_ivon_bma(
    model: nn.Module,
    optimizer: ivon.IVON,
    x: torch.Tensor,
    samples: int = IVON_TEST_SAMPLES,
    batch_size: int = 1000,
    *,
    seed: int = 0,
    stopwatch: Stopwatch | None = None,
) -> torch.Tensor:
    """IVON's Bayesian model average: the mean of the softmax over posterior weight samples.

    Each sample draws one weight vector (inside ``optimizer.sampled_params()``) and predicts
    all of ``x`` with it; the model is left at its mean weights.

    Args:
        model: Classifier trained with ``optimizer``.
        optimizer: The ``ivon.IVON`` optimizer holding the posterior.
        x: Inputs, shape ``(N, ...)``.
        samples: Number of weight samples (the reference evaluation used 100).
        batch_size: Examples per forward pass.
        seed: Seed of the weight samples (global generator, forked and restored).
        stopwatch: If given, the prediction's time is added to it.

    Returns:
        Averaged probabilities, shape ``(N, K)``; every row sums to 1.

    Raises:
        ValueError: On malformed arguments or an optimizer that is not IVON.
    """
    _check(x, batch_size, samples)
    with _predicting(model, stopwatch):
        mean, _ = _sample_average(
            model,
            optimizer,
            samples,
            seed,
            lambda: torch.softmax(_forward(model, x, batch_size), dim=-1),
        )
    return mean


def predict_regression(
    model: nn.Module,
    x: torch.Tensor,
    noise_var: float,
    batch_size: int = 1000,
    *,
    stopwatch: Stopwatch | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian predictive at the current weights: the network's output with the known noise.

    Args:
        model: Regression network returning means ``(N, D)``.
        x: Inputs, shape ``(N, ...)``.
        noise_var: Known noise variance of the likelihood.
        batch_size: Examples per forward pass.
        stopwatch: If given, the prediction's time is added to it.

    Returns:
        ``(mean, var)``, both ``(N, D)``; ``var`` equals ``noise_var`` everywhere.

    Raises:
        ValueError: On malformed arguments.
    """
    _check(x, batch_size)
    if not noise_var > 0:
        raise ValueError(f"invalid noise_var: {noise_var!r} (must be positive)")
    with _predicting(model, stopwatch):
        mean = _forward(model, x, batch_size)
    return mean, torch.full_like(mean, noise_var)


def predict_regression_ivon_bma(
    model: nn.Module,
    optimizer: ivon.IVON,
    x: torch.Tensor,
    noise_var: float,
    samples: int = IVON_TEST_SAMPLES,
    batch_size: int = 1000,
    *,
    seed: int = 0,
    stopwatch: Stopwatch | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """IVON's model average for regression: moments of the Gaussian mixture over weight samples.

    With sampled means ``mu_s``: the predictive mean is ``mean_s(mu_s)`` and the variance is
    ``noise_var + var_s(mu_s)`` (population variance over the samples), the law of total variance.

    Args:
        model: Regression network trained with ``optimizer``.
        optimizer: The ``ivon.IVON`` optimizer holding the posterior.
        x: Inputs, shape ``(N, ...)``.
        noise_var: Known noise variance of the likelihood.
        samples: Number of weight samples.
        batch_size: Examples per forward pass.
        seed: Seed of the weight samples (global generator, forked and restored).
        stopwatch: If given, the prediction's time is added to it.

    Returns:
        ``(mean, var)``, both ``(N, D)``; ``var >= noise_var``.

    Raises:
        ValueError: On malformed arguments or an optimizer that is not IVON.
    """
    _check(x, batch_size, samples)
    if not noise_var > 0:
        raise ValueError(f"invalid noise_var: {noise_var!r} (must be positive)")
    with _predicting(model, stopwatch):
        mean, var = _sample_average(
            model, optimizer, samples, seed, lambda: _forward(model, x, batch_size)
        )
    return mean, var + noise_var
