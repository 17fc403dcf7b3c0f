"""The synthetic coverage study (claim C2): nominal credible mass against coverage of the truth.

Protocol of the reference (``toy_ood_uncertainty.jl``; spec F.2): many networks with the
``toy_regression`` architecture are trained on the same 200-point sine dataset (they differ only
in their random prior means), and each predicts on a grid reaching 20 units beyond the data. At
every grid point ``x`` and for every network the z-score ``z = Φ((f(x) − μ(x)) / σ(x))`` of the
noise-free truth ``f`` under the network's predictive is computed; the network *covers* the
truth at nominal mass ``m`` when ``z`` lies in the central interval ``(0.5 − m/2, 0.5 + m/2)``.
Coverage at ``x`` is the fraction of networks that cover. The paper reports the median coverage
over ``x < −10`` and ``x > 10`` at 1σ/2σ/3σ and the Pearson correlation between the masses
``m = 1 %, …, 100 %`` (twice) and the two sides' median coverages (0.901).

Beyond the paper this module adds a data-resampling variant (a fresh dataset per network),
coverage inside the training range, CRPS and interval width, and bootstrap confidence intervals
obtained by resampling the networks. The statistics take any method's predictive means and
variances, so baselines are scored by the same code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import special

from amp import specs
from amp.network import Network
from amp.runtime import resolve_dtype
from amp.trainer import Trainer
from harness.data import make_sine, sine_function

__all__ = [
    "BANDS",
    "GRID_MARGIN",
    "GRID_STEP",
    "OUTSIDE",
    "PAPER",
    "StudyConfig",
    "bootstrap",
    "coverage",
    "grid_for",
    "network_orders",
    "study_data",
    "summarize",
    "train_mp",
    "z_scores",
]

BANDS = {"1sigma": (0.16, 0.84), "2sigma": (0.025, 0.975), "3sigma": (0.0015, 0.9985)}
"""Central intervals of the z-score used by the reference for "1σ", "2σ" and "3σ"."""

OUTSIDE = 10.0
"""The sides of the study: grid points with ``x < −10`` ("neg") and ``x > 10`` ("pos")."""

GRID_MARGIN = 20.0
"""The prediction grid reaches this far beyond the training inputs."""

GRID_STEP = 0.05
"""Spacing of the prediction grid."""

ORDER_SEED_OFFSET = 2
"""Seed of the networks' example orders relative to ``init_seed`` (the prior means use
``init_seed``, the trainer ``init_seed + 1``)."""

MASSES = np.arange(1, 101) / 100
"""Nominal masses of the correlation statistic: 1 %, 2 %, …, 100 %."""

PAPER = {
    "correlation": 0.901066,
    "correlation_pos": 0.9607,
    "correlation_neg": 0.9929,
    "neg_1sigma": 0.61,
    "neg_2sigma": 0.86,
    "neg_3sigma": 0.93,
    "pos_1sigma": 0.36,
    "pos_2sigma": 0.68,
    "pos_3sigma": 0.90,
}
"""The reference's own recorded outputs (code comments of ``toy_ood_uncertainty.jl``)."""


@dataclass(frozen=True)
class StudyConfig:
    """Settings of the coverage study.

    Attributes:
        networks: Number of independently initialised networks.
        iterations: Sweeps over the (single) batch of 200 training points.
        variant: ``"initialisation"`` (the paper: one dataset, networks differ in their prior
            draws) or ``"data"`` (a fresh dataset per network as well).
        schedule: Within-batch schedule of the trainer.
        group_size: Examples per group of the grouped schedules.
        data_seed: Seed of the dataset (per-network datasets use ``data_seed + r``).
        init_seed: Seed of the prior means and the example order.
        dtype: ``"float64"`` or ``"float32"``.
    """

    networks: int = 100
    iterations: int = 500
    variant: str = "initialisation"
    schedule: str = "scaled"
    group_size: int = 16
    data_seed: int = 98
    init_seed: int = 0
    dtype: str = "float64"

    def __post_init__(self) -> None:
        if self.variant not in ("initialisation", "data"):
            raise ValueError(f"invalid variant: {self.variant!r} (use 'initialisation' or 'data')")
        if self.networks < 2:
            raise ValueError(f"invalid networks: {self.networks!r} (need at least 2)")
        if self.iterations < 1:
            raise ValueError(f"invalid iterations: {self.iterations!r} (must be >= 1)")


def grid_for(x_train: torch.Tensor) -> torch.Tensor:
    """The reference's prediction grid ``min(x) − 20 : 0.05 : max(x) + 20``, shape ``(M, 1)``."""
    lo, hi = float(x_train.min()) - GRID_MARGIN, float(x_train.max()) + GRID_MARGIN
    steps = math.floor((hi - lo) / GRID_STEP + 1e-9) + 1
    return (lo + GRID_STEP * torch.arange(steps, dtype=torch.float64))[:, None]


def study_data(config: StudyConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Training inputs and targets: ``(200, 1)`` each, or ``(R, 200, 1)`` per network."""
    if config.variant == "initialisation":
        data = make_sine(seed=config.data_seed)
        return data.x_train, data.y_train
    sets = [make_sine(seed=config.data_seed + r) for r in range(config.networks)]
    return torch.stack([s.x_train for s in sets]), torch.stack([s.y_train for s in sets])


def network_orders(
    x: torch.Tensor, y: torch.Tensor, networks: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One data set in a random order of its own for every network: ``(R, N, 1)`` each.

    The reference trains its networks one by one, each shuffling the examples itself. Trained
    together, the networks share the trainer's example order; giving each network its own
    permutation of the data restores independent orders.

    Args:
        x: Inputs ``(N, 1)``.
        y: Targets ``(N, 1)``.
        networks: Number of networks ``R``.
        seed: Seed of the permutations.
    """
    generator = torch.Generator().manual_seed(seed)
    perms = torch.stack([torch.randperm(len(x), generator=generator) for _ in range(networks)])
    return x[perms], y[perms]


def train_mp(config: StudyConfig, *, progress: bool = False) -> dict[str, np.ndarray]:
    """Train the study's message-passing networks together and predict on the grid.

    Every network visits the examples in its own order (:func:`network_orders`; with a fresh
    data set per network the data differ anyway).

    Returns:
        ``x_train``, ``y_train``, ``grid`` ``(M,)``, ``truth`` ``(M,)``, and the predictive
        ``mean`` and ``var`` (including the noise) ``(R, M)``.
    """
    dtype = resolve_dtype(config.dtype)
    x, y = study_data(config)
    x_fit, y_fit = x, y
    if x.dim() == 2:  # one data set shared by every network
        x_fit, y_fit = network_orders(x, y, config.networks, config.init_seed + ORDER_SEED_OFFSET)
    net = Network(
        specs.arch("toy_regression"),
        (1,),
        seed=config.init_seed,
        dtype=dtype,
        replicas=config.networks,
    )
    trainer = Trainer(
        net,
        batch_size=x.shape[-2],
        schedule=config.schedule,
        group_size=config.group_size,
        seed=config.init_seed + 1,
        progress=progress,
    )
    trainer.fit(x_fit, y_fit, epochs=1, iterations=config.iterations)
    grid = grid_for(x)
    mean, var = net.predict(grid.to(dtype))
    return {
        "x_train": x.squeeze(-1).numpy(),
        "y_train": y.squeeze(-1).numpy(),
        "grid": grid[:, 0].numpy(),
        "truth": sine_function(grid)[:, 0].numpy(),
        "mean": mean[..., 0].double().numpy(),
        "var": var[..., 0].double().numpy(),
    }


def z_scores(truth: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """``Φ((truth − μ) / σ)`` for every network and grid point, ``(R, M)``."""
    return special.ndtr((truth[None, :] - mean) / np.sqrt(var))


def coverage(z: np.ndarray, lower: float, upper: float) -> np.ndarray:
    """Fraction of networks whose z-score lies strictly inside ``(lower, upper)``, ``(M,)``."""
    return ((z > lower) & (z < upper)).mean(axis=0)


def _crps(truth: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """Closed-form CRPS of Gaussian predictives at the truth, ``(R, M)``."""
    std = np.sqrt(var)
    t = (truth[None, :] - mean) / std
    pdf = np.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)
    return std * (t * (2 * special.ndtr(t) - 1) + 2 * pdf - 1 / math.sqrt(math.pi))


def summarize(
    grid: np.ndarray, truth: np.ndarray, mean: np.ndarray, var: np.ndarray, x_train: np.ndarray
) -> dict[str, float]:
    """All statistics of the study for one method.

    Args:
        grid: Grid inputs ``(M,)``.
        truth: Noise-free function on the grid ``(M,)``.
        mean: Predictive means ``(R, M)``.
        var: Predictive variances including the noise ``(R, M)``.
        x_train: Training inputs (any shape) for the "inside" region.

    Returns:
        ``{side}_{band}`` median coverages (sides ``neg``, ``pos``, ``inside``), the
        correlation statistics ``correlation`` (both sides pooled, as the paper),
        ``correlation_pos`` and ``correlation_neg``, and per region the mean ``crps_*`` and
        mean 2σ interval ``width_*`` over networks and grid points.
    """
    z = z_scores(truth, mean, var)
    regions = {
        "neg": grid < -OUTSIDE,
        "pos": grid > OUTSIDE,
        "inside": (grid >= x_train.min()) & (grid <= x_train.max()),
    }
    out: dict[str, float] = {}
    for side, mask in regions.items():
        for band, (lower, upper) in BANDS.items():
            out[f"{side}_{band}"] = float(np.median(coverage(z[:, mask], lower, upper)))
    curves = {
        side: np.array(
            [np.median(coverage(z[:, regions[side]], 0.5 - m / 2, 0.5 + m / 2)) for m in MASSES]
        )
        for side in ("pos", "neg")
    }
    out["correlation"] = _pearson(
        np.concatenate([MASSES, MASSES]), np.concatenate([curves["pos"], curves["neg"]])
    )
    out["correlation_pos"] = _pearson(MASSES, curves["pos"])
    out["correlation_neg"] = _pearson(MASSES, curves["neg"])
    crps = _crps(truth, mean, var)
    width = 2 * 2 * np.sqrt(var)
    for side, mask in regions.items():
        out[f"crps_{side}"] = float(crps[:, mask].mean())
        out[f"width_{side}"] = float(width[:, mask].mean())
    return out


def coverage_curves(
    grid: np.ndarray, truth: np.ndarray, mean: np.ndarray, var: np.ndarray
) -> dict[str, np.ndarray]:
    """Median coverage against nominal mass per side (for figures), each ``(100,)``."""
    z = z_scores(truth, mean, var)
    sides = {"neg": grid < -OUTSIDE, "pos": grid > OUTSIDE}
    return {
        side: np.array([np.median(coverage(z[:, mask], 0.5 - m / 2, 0.5 + m / 2)) for m in MASSES])
        for side, mask in sides.items()
    } | {"mass": MASSES}


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; NaN when one side is constant."""
    a, b = a - a.mean(), b - b.mean()
    norm = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / norm) if norm > 0 else math.nan


def bootstrap(
    grid: np.ndarray,
    truth: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    x_train: np.ndarray,
    *,
    samples: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of every statistic, resampling the networks.

    Args:
        grid: Grid inputs ``(M,)``.
        truth: Truth on the grid ``(M,)``.
        mean: Predictive means ``(R, M)``.
        var: Predictive variances ``(R, M)``.
        x_train: Training inputs.
        samples: Bootstrap resamples.
        level: Coverage of the intervals.
        seed: Seed of the resampling generator.

    Returns:
        ``{statistic: (low, high)}``.
    """
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    r = mean.shape[0]
    for _ in range(samples):
        idx = rng.integers(0, r, size=r)
        stats = summarize(grid, truth, mean[idx], var[idx], x_train)
        for key, value in stats.items():
            draws.setdefault(key, []).append(value)
    tail = (1 - level) / 2 * 100
    return {
        key: (float(np.nanpercentile(v, tail)), float(np.nanpercentile(v, 100 - tail)))
        for key, v in draws.items()
    }
