"""The coverage study's baselines: many AdamW or IVON networks trained together on sine data.

Each network's predictive on the grid is a Gaussian (mean, variance including the noise):

* ``adamw`` — one network's point prediction with the known noise variance;
* ``adamw_ensemble`` — deep ensembles of :data:`ENSEMBLE_SIZE` AdamW networks (the mixture's
  mean and variance: mean noise plus the spread of the members' means);
* ``ivon`` — one IVON network's Bayesian model average over ``test_samples`` weight draws.

The training protocol (learning rates, steps, IVON's Hessian settings) is
:func:`coverage_config`, found by measurement.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from amp import specs
from baselines.predict import predict_regression, predict_regression_ivon_bma
from baselines.train import TrainConfig, train

__all__ = ["ENSEMBLE_SIZE", "coverage_config", "train_coverage_baseline"]

ENSEMBLE_SIZE = 5
"""Members of each AdamW deep ensemble (the usual size in the deep-ensembles literature)."""


COVERAGE_NETWORKS = 100
"""Independently initialised networks per method (algorithm spec F.2)."""
COVERAGE_BATCH_SIZE = 200
"""One full batch of the 200 training points of ``harness.data.make_sine()`` (spec F.2)."""
COVERAGE_ADAMW_LR = 1e-2
"""AdamW learning rate, chosen by measurement: in 1000 steps 3e-3 fits the noise-free function to
a median RMSE of 0.034, 1e-2 to 0.019, 3e-2 to 0.016 but with a worse worst network."""
COVERAGE_ADAMW_EPOCHS = 1000
"""AdamW full-batch steps: the fit to the noise-free function stops improving much beyond this
(median RMSE 0.040 at 500, 0.019 at 1000, 0.016 at 2000 steps)."""
COVERAGE_IVON_LR = 3e-3
"""IVON learning rate. With ``rescale_lr`` the first steps move by ``lr * gradient``, and the
Gaussian NLL's factor ``1 / 0.05**2 = 400`` makes 1e-2 unstable at ``hess_init`` 10 (divergence
at ``beta2`` 0.999; one network of 100 at held-out RMSE 0.46 at 0.99)."""
COVERAGE_IVON_HESS_INIT = 10.0
"""IVON's initial Hessian. Values of 1 or below start with weight noise
``1 / sqrt(ess * hess_init) >= 0.07`` at ``ess = 200``. With ``beta2 >= 0.999`` the networks then
underfit (median held-out RMSE 0.10 to 0.24 after 2000 steps) or diverge (``lr >= 1e-2``); with
``beta2`` 0.99, ``hess_init`` 1 and ``lr`` 3e-2 they fit (0.064), with a wider in-range spread
(0.091) and three to four times the far-out spread of ``hess_init`` 10."""
COVERAGE_IVON_BETA2 = 0.99
"""IVON's Hessian momentum. The Hessian forgets its initial value as ``beta2 ** steps``: at the
recommended 0.9999 it keeps over 70 % of ``hess_init`` after 3000 steps (the variances are not
learned, ``team-approx-bayes/ivon#1``); at 0.999 the median element still equals the decayed
initial value; 0.99 lets it converge within a few hundred steps."""
COVERAGE_IVON_EPOCHS = 3000
"""IVON full-batch steps (2000 leave the fit visibly worse: median RMSE to the truth 0.030 vs
0.024)."""
COVERAGE_CHECKPOINT_EVERY = 250
"""Checkpoint interval in epochs (one epoch is one step here, too short to save after each)."""


def coverage_config(
    method: str, *, replicas: int = COVERAGE_NETWORKS, **overrides: Any
) -> TrainConfig:
    """The training protocol of the coverage study's baselines, found by measurement.

    Both methods train ``replicas`` networks together on the full batch with the cosine schedule
    of :mod:`baselines.train`, checkpointing every :data:`COVERAGE_CHECKPOINT_EVERY` epochs when
    given a ``checkpoint_path``. AdamW: :data:`COVERAGE_ADAMW_LR`, :data:`COVERAGE_ADAMW_EPOCHS`,
    weight decay 1e-2. IVON: :data:`COVERAGE_IVON_LR`, :data:`COVERAGE_IVON_HESS_INIT`,
    :data:`COVERAGE_IVON_BETA2`, :data:`COVERAGE_IVON_EPOCHS`, ``ess`` = 200 (the per-network
    training-set size), prior precision ``weight_decay`` 1e-4 (the ``ivon-opt`` default), one weight
    sample per step.

    Measured on ``harness.data.make_sine()`` (float32, 100 networks, seeds 0 to 2, medians over the
    networks; the 50 held-out points are 0.057 RMSE from the noise-free function):

    * AdamW: held-out RMSE 0.062 (worst network 0.085 to 0.10), RMSE to the noise-free function
      0.019 to 0.020.
    * IVON (model average of 100 samples): held-out RMSE 0.062 (worst network 0.07 to 0.13),
      RMSE to the truth 0.023 to 0.025, predictive standard deviation 0.072 in range, about 4
      at ``|x| = 10`` and 8 at ``|x| = 20``. The Hessian has left ``hess_init`` (by more than
      half for 98 % of the elements) and correlates with the diagonal Gauss-Newton matrix at
      the mean (Spearman 0.69 to 0.80). The elements the data do not determine fall to about
      ``-weight_decay`` (``ivon-opt``'s estimates may be negative; ``hess + weight_decay``
      stays positive), so their variance reaches or exceeds the prior's
      ``1 / (ess * weight_decay)``: it sets the spread far out.
    * Lowering ``hess_init`` to 3 with ``lr`` 1e-2 fits as well but let one of 100 networks blow
      up (RMSE 58) for one of three seeds.
    * Time for 100 networks on two shared CPU cores with one thread: AdamW 9 s, IVON 17 s in
      float32 (18 s and 44 s in float64); one network alone takes 1.4 s and 1.3 s.

    Args:
        method: ``"adamw"`` or ``"ivon"``.
        replicas: Number of networks trained together.
        **overrides: Further :class:`~baselines.train.TrainConfig` fields (``seed``, ``device``,
            ``checkpoint_path``, ...), which take precedence.

    Returns:
        The configuration for :func:`baselines.train.train`.

    Raises:
        ValueError: If ``method`` is unknown.
    """
    if method == "adamw":
        protocol = {"lr": COVERAGE_ADAMW_LR, "epochs": COVERAGE_ADAMW_EPOCHS}
    elif method == "ivon":
        protocol = {
            "lr": COVERAGE_IVON_LR,
            "epochs": COVERAGE_IVON_EPOCHS,
            "hess_init": COVERAGE_IVON_HESS_INIT,
            "beta2": COVERAGE_IVON_BETA2,
        }
    else:
        raise ValueError(f"invalid method: {method!r} (use 'adamw' or 'ivon')")
    settings = {
        "method": method,
        "batch_size": COVERAGE_BATCH_SIZE,
        "replicas": replicas,
        "checkpoint_every": COVERAGE_CHECKPOINT_EVERY,
    }
    return TrainConfig(**(settings | protocol | overrides))


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
