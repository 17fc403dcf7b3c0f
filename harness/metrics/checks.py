"""Input checks shared by the metrics: arrays or tensors in, validated float64 numpy arrays out.

Every check raises a ``ValueError`` that names the argument, the problem and the fix. These are
helpers of the :mod:`harness.metrics` modules, not part of the package's public interface.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "PROB_SUM_TOL",
    "ArrayLike",
    "as_float",
    "as_numpy",
    "check_classification",
    "check_probs",
    "check_regression",
    "check_scores",
    "check_var",
]

PROB_SUM_TOL: float = 1e-3
"""Largest accepted ``|sum_k p_nk - 1|``; float32 softmax outputs are well within it."""

ArrayLike = Any
"""A numpy array, a torch tensor or anything ``numpy.asarray`` accepts."""


def as_numpy(x: ArrayLike, name: str) -> np.ndarray:
    """``x`` as a numpy array (a torch tensor moved to the CPU, floats as float64); not empty."""
    if hasattr(x, "detach"):  # a torch tensor; avoids importing torch here
        x = x.detach().cpu()
        x = (x.double() if x.is_floating_point() else x).numpy()
    arr = np.asarray(x)
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); pass at least one example")
    return arr


def as_float(x: ArrayLike, name: str, ndims: tuple[int, ...]) -> np.ndarray:
    """``x`` as a finite float64 array with one of the numbers of dimensions ``ndims``."""
    arr = as_numpy(x, name)
    if arr.ndim not in ndims:
        raise ValueError(
            f"{name} must have {' or '.join(map(str, ndims))} dimensions, got shape "
            f"{arr.shape}; reshape it"
        )
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        bad = int(np.sum(~np.isfinite(arr)))
        raise ValueError(
            f"{name} contains {bad} NaN or infinite values; fix the model output "
            "(e.g. diverged training) before evaluating"
        )
    return arr


def check_probs(probs: ArrayLike, name: str = "probs") -> np.ndarray:
    """Probabilities ``(N, K)``, ``K >= 2``: non-negative rows summing to 1 within tolerance."""
    p = as_float(probs, name, (2,))
    if p.shape[1] < 2:
        raise ValueError(f"{name} must have at least 2 classes (columns), got shape {p.shape}")
    if np.any(p < 0):
        raise ValueError(
            f"{name} has negative entries (min {p.min():.3g}); pass probabilities, "
            "not logits (apply softmax first)"
        )
    err = np.abs(p.sum(axis=1) - 1.0)
    if np.any(err > PROB_SUM_TOL):
        raise ValueError(
            f"rows of {name} must sum to 1 (worst |sum - 1| = {err.max():.3g} > "
            f"{PROB_SUM_TOL}); apply softmax to logits or divide each row by its sum"
        )
    return p


def check_classification(probs: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities ``(N, K)`` and integer labels ``(N,)`` in ``0 .. K-1`` (as int64)."""
    p = check_probs(probs)
    y = as_numpy(labels, "labels")
    if y.ndim != 1 or y.shape[0] != p.shape[0]:
        raise ValueError(
            f"labels must have shape ({p.shape[0]},) to match probs {p.shape}, got "
            f"{y.shape}; pass one integer class index per example"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"labels must be integers, got dtype {y.dtype}; convert class indices "
            "with .astype(np.int64) or .long()"
        )
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(
            f"labels must lie in 0..{p.shape[1] - 1}, got range {y.min()}..{y.max()}"
            "; use 0-based class indices matching the columns of probs"
        )
    return p, y.astype(np.int64)


def check_regression(
    mean: ArrayLike, var: ArrayLike | None, targets: ArrayLike
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Regression mean, optional variance and targets of equal shape ``(N,)`` or ``(N, D)``."""
    mu = as_float(mean, "mean", (1, 2))
    y = as_float(targets, "targets", (1, 2))
    if y.shape != mu.shape:
        raise ValueError(
            f"targets shape {y.shape} differs from mean shape {mu.shape}; both must "
            "be (N,) or (N, D)"
        )
    if var is None:
        return mu, None, y
    v = check_var(var)
    if v.shape != mu.shape:
        raise ValueError(f"var shape {v.shape} differs from mean shape {mu.shape}")
    return mu, v, y


def check_var(var: ArrayLike) -> np.ndarray:
    """Positive variances ``(N,)`` or ``(N, D)``."""
    v = as_float(var, "var", (1, 2))
    if np.any(v <= 0):
        raise ValueError(
            f"var must be positive, found {int(np.sum(v <= 0))} entries <= 0 "
            f"(min {v.min():.3g}); pass variances, not log-variances, and add "
            "observation noise if the model is degenerate"
        )
    return v


def check_scores(scores: ArrayLike, name: str) -> np.ndarray:
    """Finite detection scores ``(N,)``."""
    return as_float(scores, name, (1,))
