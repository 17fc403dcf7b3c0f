"""The UCI protocol: the network, the noise grid, and each method's training settings.

The network is the published one (one hidden layer of 50 units, 100 for protein) with
LeakyReLU(0.1) instead of PBP's ReLU for every method, ending in a Gaussian likelihood of fixed
noise variance (:class:`amp.specs.Regression`). That variance is chosen per split from
:data:`NOISE_GRID` by test-free validation (:mod:`harness.uci.runs`).

Every default below is the library's; the ``uci`` section of the pipeline configuration
(``workflow/schemas/config.schema.yaml``) overrides them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from amp import specs
from harness.data.uci import UCI_SETS, uci_set

__all__ = [
    "METHODS",
    "NOISE_GRID",
    "AdamWSettings",
    "IVONSettings",
    "MPSettings",
    "Protocol",
    "Settings",
    "check_grid",
    "epochs_for",
    "method_settings",
    "uci_layers",
]

METHODS = ("mp", "adamw", "ivon")
"""Methods of the benchmark."""

LEAK = 0.1
"""Slope of the LeakyReLU for negative inputs (the project's activation; PBP used ReLU)."""

NOISE_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
"""Observation-noise variances tried, in units of the normalised target (variance 1).

Half-decade steps from 1e-3 to 1, i.e. noise standard deviations of 3 % to 100 % of the target's
standard deviation. The published RMSEs span that range in normalised units: about 0.045 for
yacht, 0.1 for energy, 0.3 for boston and kin8nm, 0.75 for wine and protein.
"""


@dataclass(frozen=True)
class MPSettings:
    """Message passing on the UCI network.

    Attributes:
        epochs: ``None`` (the set's protocol epochs: 40, protein 20), one number for every set,
            or a mapping from set name to epochs (other sets: the protocol's).
        batch_size: Examples per batch of the message store.
        schedule: Within-batch schedule (:class:`amp.trainer.Schedule`).
        group_size: Examples per group of the grouped schedules.
        iterations: Sweeps per batch visit. One sweep per epoch: on kin8nm (one split, noise
            variance 0.1) 10 epochs of one sweep reached RMSE 0.097 and log-likelihood 0.90,
            5 epochs of the reference's ``ceil(epoch / 2)`` sweeps (9 in all) 0.109 and 0.73.
        dtype: ``"float64"`` (the reference) or ``"float32"``.
    """

    epochs: int | Mapping[str, int] | None = None
    batch_size: int = 128
    schedule: str = "scaled"
    group_size: int = 16
    iterations: int = 1
    dtype: str = "float64"


@dataclass(frozen=True)
class AdamWSettings:
    """AdamW on the UCI network (Gaussian likelihood with the chosen noise variance).

    The loss ``(y − f)² / (2 σ²)`` only rescales with ``σ²``, and AdamW's steps do not depend on
    the loss's scale (up to its ``eps``), so one training serves every noise variance.

    Attributes:
        epochs: As for :class:`MPSettings`.
        batch_size: Examples per step.
        lr: Learning rate (cosine-annealed to 0 over the epochs). Measured on 5 splits of boston,
            energy and yacht (40 epochs): 1e-3 underfits (RMSE 3.45, 2.77, 8.89), 1e-2 gives
            2.78, 1.31, 1.64 and 3e-2 2.69, 0.61, 0.77.
        weight_decay: Decoupled weight decay (``torch.optim.AdamW``'s default).
        dtype: ``"float32"`` or ``"float64"``.
    """

    epochs: int | Mapping[str, int] | None = None
    batch_size: int = 32
    lr: float = 3e-2
    weight_decay: float = 1e-2
    dtype: str = "float32"


@dataclass(frozen=True)
class IVONSettings:
    """IVON on the UCI network (variational posterior; predictions are its model average).

    IVON trains on the squared error with ``ess = N / σ²`` (:mod:`harness.uci.fit`), the same
    objective as the Gaussian likelihood of variance ``σ²``, so ``lr`` and ``hess_init`` mean the
    same for every noise variance.

    Attributes:
        epochs: As for :class:`MPSettings`.
        batch_size: Examples per step.
        lr: Learning rate (cosine-annealed). Measured on 5 splits (40 epochs, ``beta2`` 0.99),
            RMSE / log-likelihood: energy 1.77 / −2.05 at 0.1 and 1.02 / −1.55 at 0.3 (2.12 /
            −2.22 at 0.3 with ``beta2`` 0.999; 1.71 / −2.43 at 1.0), yacht 2.29 / −2.32 and
            1.03 / −1.62, boston 2.85 / −2.62 and 2.82 / −2.62, wine 0.67 / −1.16 and 0.70 /
            −1.69 (overconfident: 79 % inside 2σ).
        weight_decay: Prior precision per example (``ivon-opt``'s default).
        hess_init: Initial Hessian estimate (``ivon-opt``'s default).
        beta2: Hessian momentum. ``ivon-opt``'s 0.99999 keeps nearly all of ``hess_init`` over
            the few thousand steps of a UCI run (see :mod:`harness.coverage_baselines`).
        clip_radius: Element-wise bound of each update (``math.inf``: none; 1e-3 slowed training
            so much that energy's RMSE stayed at 2.2 to 5.1).
        test_samples: Weight samples of the model average.
        dtype: ``"float32"`` or ``"float64"``.
    """

    epochs: int | Mapping[str, int] | None = None
    batch_size: int = 32
    lr: float = 0.3
    weight_decay: float = 1e-4
    hess_init: float = 1.0
    beta2: float = 0.99
    clip_radius: float = math.inf
    test_samples: int = 100
    dtype: str = "float32"


Settings = MPSettings | AdamWSettings | IVONSettings
_SETTINGS = {"mp": MPSettings, "adamw": AdamWSettings, "ivon": IVONSettings}


def method_settings(method: str, overrides: Mapping[str, Any] | None = None) -> Settings:
    """The settings of ``method`` with configuration ``overrides`` applied.

    Raises:
        ValueError: On an unknown method or setting.
    """
    if method not in _SETTINGS:
        raise ValueError(f"invalid method {method!r}; use one of {', '.join(METHODS)}")
    cls = _SETTINGS[method]
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(overrides or {}) - known)
    if unknown:
        raise ValueError(f"unknown {method} settings {unknown}; known: {', '.join(sorted(known))}")
    return cls(**dict(overrides or {}))


def epochs_for(settings: Settings, name: str) -> int:
    """Epochs of a method on set ``name``: its setting, else the protocol's (40; protein 20)."""
    epochs = settings.epochs
    if isinstance(epochs, Mapping):
        unknown = sorted(set(epochs) - set(UCI_SETS))
        if unknown:
            raise ValueError(f"epochs given for unknown UCI sets {unknown}")
        epochs = epochs.get(name)
    epochs = uci_set(name).epochs if epochs is None else epochs
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"invalid epochs {epochs!r} for uci/{name} (a positive integer)")
    return epochs


def uci_layers(name: str, noise_var: float) -> tuple[specs.LayerSpec, ...]:
    """The protocol's network for set ``name``: ``D → hidden → 1`` with LeakyReLU(0.1).

    Args:
        name: A key of :data:`harness.data.uci.UCI_SETS` (protein has 100 hidden units).
        noise_var: Observation-noise variance of the Gaussian likelihood (normalised units).
    """
    if not (isinstance(noise_var, int | float) and math.isfinite(noise_var) and noise_var > 0):
        raise ValueError(f"invalid noise_var {noise_var!r} (a positive number)")
    hidden = uci_set(name).hidden
    return (
        specs.Linear(hidden),
        specs.LeakyReLU(LEAK),
        specs.Linear(1),
        specs.Regression(float(noise_var)),
    )


def check_grid(grid: Sequence[float]) -> tuple[float, ...]:
    """The noise grid as a sorted tuple of distinct positive floats."""
    values = tuple(sorted({float(v) for v in grid}))
    if not values or any(not (math.isfinite(v) and v > 0) for v in values):
        raise ValueError(f"invalid noise grid {list(grid)!r} (positive numbers, at least one)")
    return values


@dataclass(frozen=True)
class Protocol:
    """What every method shares: the noise grid, the validation split's seed, the run seed.

    Attributes:
        noise_grid: Candidate noise variances (normalised units).
        validation_seed: Seed of the 80/20 partition of each training split.
        seed: Seed of the initial weights (per split) and of the example order.
    """

    noise_grid: tuple[float, ...] = NOISE_GRID
    validation_seed: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "noise_grid", check_grid(self.noise_grid))
