"""Training one method on several UCI splits at once and predicting: one network per split.

The splits of a set have equally many training rows, so their networks train together as
replicas (:class:`amp.Network` with ``replicas``, :class:`baselines.replicas.ReplicatedSequential`)
on one batch of data per network ``(R, N, D)``: a single batched run instead of R small ones
(MP on kin8nm: about four times faster per split with 20 splits at once). The networks share no
parameter; they share the example order.

Initial weights: an MP network's prior means are those of a single network built with the
split's own seed (:func:`split_seed`), so a split's result does not depend on which splits train
beside it. The baselines draw their R networks one after another from one generator
(:func:`baselines.models.build_model`), so their initial weights depend on the split's position
among the splits trained together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from amp import specs
from amp.network import Network
from amp.runtime import Stopwatch, resolve_dtype
from amp.trainer import Trainer
from baselines.predict import predict_regression, predict_regression_ivon_bma
from baselines.train import TrainConfig, train
from harness.uci.protocol import (
    AdamWSettings,
    IVONSettings,
    MPSettings,
    Settings,
    epochs_for,
    uci_layers,
)

__all__ = ["Fit", "fit_predict", "split_seed"]


@dataclass(frozen=True)
class Fit:
    """Predictions of R networks, in normalised target units.

    Attributes:
        mean: Predictive means ``(R, M)``.
        var: Predictive variances including the noise ``(R, M)``.
        seconds: Wall-clock time of the training of all R networks together.
        epochs: Epochs trained.
    """

    mean: np.ndarray
    var: np.ndarray
    seconds: float
    epochs: int


def split_seed(seed: int, split: int) -> int:
    """Seed of split ``split``'s initial weights in a run seeded ``seed``."""
    return int(np.random.SeedSequence([seed, split]).generate_state(1)[0])


def fit_predict(
    name: str,
    settings: Settings,
    x: torch.Tensor,
    y: torch.Tensor,
    x_eval: torch.Tensor,
    noise_var: float,
    *,
    splits: list[int],
    seed: int = 0,
) -> Fit:
    """Train one network per split on ``x, y`` and predict ``x_eval``.

    Args:
        name: The UCI set (it fixes the hidden width and the default epochs).
        settings: :class:`MPSettings`, :class:`AdamWSettings` or :class:`IVONSettings`.
        x: Normalised training inputs ``(R, N, D)``, one set per split.
        y: Normalised training targets ``(R, N, 1)``.
        x_eval: Inputs to predict ``(R, M, D)``.
        noise_var: Observation-noise variance of the likelihood (normalised units).
        splits: The R split indices (they seed MP's initial weights).
        seed: Seed of the run (initial weights, example order, IVON's weight noise).

    Returns:
        The predictions and the training time.

    Raises:
        ValueError: If the shapes disagree.
        amp.trainer.DivergenceError, baselines.train.DivergenceError: If training diverges.
    """
    if x.dim() != 3 or y.shape != (*x.shape[:2], 1) or x_eval.dim() != 3:
        raise ValueError(
            f"invalid shapes x {tuple(x.shape)}, y {tuple(y.shape)}, x_eval "
            f"{tuple(x_eval.shape)}: expected (R, N, D), (R, N, 1) and (R, M, D)"
        )
    if len(splits) != len(x) or len(x_eval) != len(x):
        raise ValueError(
            f"{len(splits)} splits for {len(x)} training sets and {len(x_eval)} inputs"
        )
    layers = uci_layers(name, noise_var)
    epochs = epochs_for(settings, name)
    dtype = resolve_dtype(settings.dtype)
    x, y, x_eval = x.to(dtype), y.to(dtype), x_eval.to(dtype)
    if isinstance(settings, MPSettings):
        mean, var, seconds = _fit_mp(layers, settings, x, y, x_eval, epochs, splits, seed)
    elif isinstance(settings, AdamWSettings | IVONSettings):
        mean, var, seconds = _fit_baseline(layers, settings, x, y, x_eval, epochs, seed)
    else:
        raise ValueError(f"invalid settings {settings!r}")
    return Fit(_numpy(mean), _numpy(var), seconds, epochs)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t[..., 0].double().cpu().numpy()


def _fit_mp(layers, settings: MPSettings, x, y, x_eval, epochs, splits, seed):
    net = _replicated_network(layers, x.shape[-1], [split_seed(seed, k) for k in splits], x.dtype)
    trainer = Trainer(
        net,
        batch_size=settings.batch_size,
        schedule=settings.schedule,
        group_size=settings.group_size,
        iterations=settings.iterations,
        seed=seed,
    )
    with Stopwatch() as watch:
        trainer.fit(x, y, epochs=epochs)
    mean, var = net.predict(x_eval)
    return mean, var, watch.seconds


def _replicated_network(layers, inputs: int, seeds: list[int], dtype: torch.dtype) -> Network:
    """R networks as replicas whose network ``r`` starts as ``Network(seed=seeds[r])``."""
    singles = [Network(layers, (inputs,), seed=s, dtype=dtype) for s in seeds]
    net = Network(layers, (inputs,), dtype=dtype, replicas=len(seeds))
    states = [single.state_dict() for single in singles]
    net.load_state_dict(
        {
            key: tuple(torch.stack([state[key][i] for state in states]) for i in range(2))
            for key in states[0]
        }
    )
    return net


def _fit_baseline(layers, settings: AdamWSettings | IVONSettings, x, y, x_eval, epochs, seed):
    """AdamW or IVON on the squared error, the noise variance moved into ``ess`` (IVON).

    The Gaussian likelihood's ``1 / σ²`` only rescales the loss. Both methods train on the loss
    with unit variance: AdamW's steps do not depend on the scale, and IVON's objective
    ``ess · mean loss + prior`` is unchanged when ``ess = N / σ²`` and the prior precision per
    example ``weight_decay · σ²`` (the prior's total precision ``ess · weight_decay`` stays
    ``N · weight_decay``). Trained directly on ``(y − f)² / (2 σ²)``, IVON's first steps (about
    ``lr ·`` gradient with ``ivon-opt``'s ``rescale_lr``) grow as ``1 / σ²`` and diverged for
    ``σ² ≤ 0.03`` on energy at every tried ``lr`` and ``hess_init``.
    """
    noise_var = layers[-1].noise_var
    unit = (*layers[:-1], specs.Regression(1.0))
    ivon = isinstance(settings, IVONSettings)
    if ivon:
        extra = {
            "ess": x.shape[1] / noise_var,
            "weight_decay": settings.weight_decay * noise_var,
            "hess_init": settings.hess_init,
            "beta2": settings.beta2,
            "clip_radius": settings.clip_radius,
        }
    else:
        extra = {"weight_decay": settings.weight_decay}
    config = TrainConfig(
        method="ivon" if ivon else "adamw",
        epochs=epochs,
        batch_size=settings.batch_size,
        lr=settings.lr,
        seed=seed,
        device="cpu",
        progress=False,
        replicas=len(x),
        **extra,
    )
    result = train(unit, x, y, config)
    if ivon:
        mean, var = predict_regression_ivon_bma(
            result.model,
            result.optimizer,
            x_eval,
            noise_var=noise_var,
            samples=settings.test_samples,
            seed=seed,
        )
    else:
        mean, var = predict_regression(result.model, x_eval, noise_var=noise_var)
    return mean, var, result.total_seconds
