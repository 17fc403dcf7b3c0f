"""The synthetic sine regression data of the coverage study (spec F.2)."""

from __future__ import annotations

import torch

from harness.data.dataset import TRAIN_FRACTION, Dataset, check_dtype
from harness.data.normalization import fit_normalization

__all__ = ["SINE_SEED", "make_sine", "sine_function"]

SINE_SEED = 98
"""Seed of the reference sine data set (``toy_ood_uncertainty.jl``)."""


def sine_function(x: torch.Tensor) -> torch.Tensor:
    """Noise-free truth of the sine data: ``0.5 x + 0.2 sin(2πx) + 0.3 sin(4πx)`` (spec F.2)."""
    return 0.5 * x + 0.2 * torch.sin(2 * torch.pi * x) + 0.3 * torch.sin(4 * torch.pi * x)


def make_sine(
    n: int = 250,
    *,
    stretch: float = 1.0,
    sigma: float = 0.05,
    offset: float = -0.5,
    train_fraction: float = TRAIN_FRACTION,
    seed: int = SINE_SEED,
    dtype: torch.dtype = torch.float64,
) -> Dataset:
    """Generate the synthetic sine regression data (``SineDataset`` of the reference code).

    ``x = (u + offset) · stretch`` with ``u ~ U[0, 1)``, ``y = sine_function(x) + N(0, sigma²)``,
    then a random split. Draws, in order, from one ``torch.Generator`` seeded with ``seed``:
    ``u``, the noise, the split permutation. No normalisation is applied.

    Args:
        n: Number of points.
        stretch: Scale of the input range.
        sigma: Noise standard deviation.
        offset: Shift of ``u`` before stretching.
        train_fraction: Share of training points (``round(n · train_fraction)``).
        seed: Generator seed.
        dtype: Floating dtype of the tensors.

    Returns:
        A regression :class:`Dataset`: ``x`` ``(N, 1)``, ``y`` ``(N, 1)``.
    """
    check_dtype(dtype)
    n_train = round(n * train_fraction)
    if n < 2 or not 1 <= n_train < n:
        raise ValueError(f"make_sine: n={n}, train_fraction={train_fraction} leave an empty split")
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, 1, generator=gen, dtype=torch.float64) + offset) * stretch
    y = sine_function(x) + sigma * torch.randn(n, 1, generator=gen, dtype=torch.float64)
    perm = torch.randperm(n, generator=gen)
    train, test = perm[:n_train], perm[n_train:]
    return Dataset(
        name="sine",
        task="regression",
        x_train=x[train].to(dtype),
        y_train=y[train].to(dtype),
        x_test=x[test].to(dtype),
        y_test=y[test].to(dtype),
        input_shape=(1,),
        num_classes=None,
        classes=None,
        normalization=fit_normalization(x, "none"),
        metadata={"n": n, "stretch": stretch, "sigma": sigma, "offset": offset, "seed": seed},
    )
