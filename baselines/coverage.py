"""The coverage study's baselines: many AdamW or IVON networks trained together on sine data.

Each network's predictive on the grid is a Gaussian (mean, variance including the noise):

* ``adamw`` — one network's point prediction with the known noise variance;
* ``adamw_ensemble`` — deep ensembles of :data:`ENSEMBLE_SIZE` AdamW networks (the mixture's
  mean and variance: mean noise plus the spread of the members' means);
* ``ivon`` — one IVON network's Bayesian model average over ``test_samples`` weight draws.

The training protocol (learning rates, steps, IVON's Hessian settings) is
:func:`baselines.replicas.coverage_config`, found by measurement.
"""

from __future__ import annotations

import numpy as np
import torch

from amp import specs
from baselines.predict import predict_regression, predict_regression_ivon_bma
from baselines.replicas import coverage_config
from baselines.train import train

__all__ = ["ENSEMBLE_SIZE", "train_coverage_baseline"]

ENSEMBLE_SIZE = 5
"""Members of each AdamW deep ensemble (the usual size in the deep-ensembles literature)."""


def train_coverage_baseline(
    method: str,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    grid: torch.Tensor,
    *,
    networks: int,
    seed: int = 0,
    test_samples: int = 100,
    dtype: torch.dtype = torch.float32,
) -> dict[str, dict[str, np.ndarray]]:
    """Train the networks of one baseline and predict on the grid.

    Args:
        method: ``"adamw"`` (also yields ``"adamw_ensemble"``) or ``"ivon"``.
        x_train: Training inputs ``(N, 1)`` shared by all networks, or ``(R, N, 1)``.
        y_train: Targets, same leading shape as ``x_train``.
        grid: Grid inputs ``(M, 1)``.
        networks: Number of networks ``R``.
        seed: Seed of the initialisation and the shuffling.
        test_samples: IVON's weight samples per prediction.
        dtype: Floating-point type of the networks.

    Returns:
        ``{name: {"mean": (R', M), "var": (R', M)}}`` per prediction kind.
    """
    layers = specs.arch("toy_regression")
    noise_var = layers[-1].noise_var
    config = coverage_config(method, replicas=networks, seed=seed, progress=False, device="cpu")
    x, y, g = x_train.to(dtype), y_train.to(dtype), grid.to(dtype)
    result = train(layers, x, y, config)
    if method == "ivon":
        mean, var = predict_regression_ivon_bma(
            result.model, result.optimizer, g, noise_var=noise_var, samples=test_samples, seed=seed
        )
        return {"ivon": _arrays(mean, var)}
    if method != "adamw":
        raise ValueError(f"invalid method: {method!r} (use 'adamw' or 'ivon')")
    mean, var = predict_regression(result.model, g, noise_var=noise_var)
    out = {"adamw": _arrays(mean, var)}
    groups = networks // ENSEMBLE_SIZE
    if groups >= 2:
        members = mean[: groups * ENSEMBLE_SIZE].reshape(groups, ENSEMBLE_SIZE, *mean.shape[1:])
        ens_mean = members.mean(1)
        ens_var = noise_var + members.var(1, unbiased=False)
        out["adamw_ensemble"] = _arrays(ens_mean, ens_var)
    return out


def _arrays(mean: torch.Tensor, var: torch.Tensor) -> dict[str, np.ndarray]:
    """``(R, M, 1)`` predictions as float64 arrays ``(R, M)``."""
    return {"mean": mean[..., 0].double().cpu().numpy(), "var": var[..., 0].double().cpu().numpy()}
