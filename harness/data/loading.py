"""Loading a data set by name: subsets, normalisation and out-of-distribution inputs."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from harness.data.dataset import NORMALIZATIONS, DataError, Dataset, check_choice, check_dtype
from harness.data.normalization import apply_normalization, fit_normalization
from harness.data.sine import SINE_SEED
from harness.data.sources import default_root, load_digits, load_raw, load_svhn
from harness.data.uci import load_uci

__all__ = [
    "DATASETS",
    "DEFAULT_OOD_NORMALIZATION",
    "load_dataset",
    "load_ood",
    "ood_normalization_of",
]

DATASETS = ("sine", "fashion_mnist", "mnist", "digits", "cifar10", "svhn")
"""Names accepted by :func:`load_dataset` (``-`` may be written for ``_``), besides the UCI
regression sets ``"uci/<name>"`` (:data:`harness.data.uci.UCI_SETS`)."""


def load_dataset(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    subset: int | None = None,
    test_subset: int | None = None,
    seed: int | None = None,
    normalization: str | None = None,
    download: bool = False,
    dtype: torch.dtype = torch.float64,
    split: int | None = None,
) -> Dataset:
    """Load a data set by name, optionally subsample it, and normalise it.

    Files are looked up in ``root`` (also in torchvision's layout below it, e.g.
    ``root/FashionMNIST/raw`` or ``root/cifar-10-batches-py``); Fashion-MNIST also in
    :data:`FASHION_MNIST_SYSTEM_DIRS`. Only with ``download=True`` is anything fetched.

    The UCI regression sets are named ``"uci/<name>"`` (``"uci/boston"``, ...; see
    :data:`harness.data.uci.UCI_SETS`) and need ``split``; they are read from the repository's
    ``data/uci`` (or from ``root``, the directory of their archives) by
    :func:`harness.data.uci.load_uci`, always normalised per feature with the split's training
    statistics, targets included, and without subsets.

    Args:
        name: One of :data:`DATASETS`, or ``"uci/<name>"``.
        root: Data directory; default ``$AMP_DATA_ROOT`` or ``data``.
        subset: Size of a seeded random subset of the training set (``None``: all of it). A
            subset keeps the original order, and with the same seed a smaller subset lies
            inside a larger one.
        test_subset: Likewise for the test set (drawn from an independent stream).
        seed: Seed of the subsets (and of the data for ``sine``, of the split for ``digits``);
            ``None`` means 98 for ``sine`` (the reference seed) and 0 otherwise.
        normalization: One of :data:`NORMALIZATIONS`; ``None`` means ``"none"`` for ``sine``
            (as in the reference) and ``"global"`` otherwise.
        download: Download missing files with torchvision.
        dtype: Floating dtype of the inputs (and of regression targets).
        split: The standard split of a UCI set (required there, refused elsewhere).

    Returns:
        The :class:`Dataset`; statistics come from the (subset) training set.

    Raises:
        ValueError: On an unknown name or normalisation, a subset larger than the data, or a
            ``split`` missing for a UCI set or given for another one.
        DatasetNotFoundError: If the files are missing; the message says how to get them.
        DataError: If a file is corrupt or the data are invalid.
    """
    if name.lower().startswith("uci/"):
        if split is None or subset is not None or test_subset is not None:
            raise ValueError(
                f"{name}: a UCI set is loaded by its standard split, e.g. "
                f"load_dataset({name!r}, split=0), without subset or test_subset"
            )
        if normalization not in (None, "per_channel"):
            raise ValueError(
                f"{name}: UCI sets are normalised per feature with the split's training "
                f"statistics (the published protocol); got normalization={normalization!r}"
            )
        return load_uci(name[len("uci/") :], split, root=root, dtype=dtype)
    if split is not None:
        raise ValueError(f"split={split!r} applies to UCI sets ('uci/<name>') only, not {name!r}")
    name = check_choice("dataset name", name.lower().replace("-", "_"), DATASETS)
    mode = normalization or ("none" if name == "sine" else "global")
    check_choice("normalization", mode, NORMALIZATIONS)
    check_dtype(dtype)
    seed = (SINE_SEED if name == "sine" else 0) if seed is None else seed
    raw = load_raw(name, default_root(root), download, seed)
    train = _subset(raw.x_train, raw.y_train, subset, "subset", np.random.default_rng([seed, 0]))
    test = _subset(
        raw.x_test, raw.y_test, test_subset, "test_subset", np.random.default_rng([seed, 1])
    )
    x_train, x_test = _to_float(train[0], dtype), _to_float(test[0], dtype)
    stats = fit_normalization(x_train, mode)
    return Dataset(
        name=name,
        task=raw.task,
        x_train=apply_normalization(x_train, stats),
        y_train=train[1].to(dtype) if raw.task == "regression" else train[1],
        x_test=apply_normalization(x_test, stats),
        y_test=test[1].to(dtype) if raw.task == "regression" else test[1],
        input_shape=tuple(raw.x_train.shape[1:]),
        num_classes=None if raw.classes is None else len(raw.classes),
        classes=raw.classes,
        normalization=stats,
        metadata={
            "source": raw.source,
            "seed": seed,
            "subset": subset,
            "test_subset": test_subset,
            "n_train_full": len(raw.x_train),
            "n_test_full": len(raw.x_test),
        },
    )


DEFAULT_OOD_NORMALIZATION = "reference"
"""How OOD inputs are normalised unless configured: with the reference data's statistics."""


def ood_normalization_of(ood: dict[str, Any] | None, method: str) -> str:
    """The OOD normalisation mode of ``method`` from an experiment's ``ood`` configuration.

    Args:
        ood: ``None`` or a mapping whose optional ``normalization`` is one mode for every
            method or a mapping ``{method: mode}``.
        method: The method (``mp``, ``adamw``, ``ivon``).

    Returns:
        ``"reference"``, ``"own"`` or ``"none"`` (:data:`DEFAULT_OOD_NORMALIZATION` when unset).
    """
    mode = (ood or {}).get("normalization", DEFAULT_OOD_NORMALIZATION)
    return mode if isinstance(mode, str) else mode.get(method, DEFAULT_OOD_NORMALIZATION)


def load_ood(
    name: str,
    reference: Dataset,
    *,
    root: str | os.PathLike | None = None,
    normalization: str = DEFAULT_OOD_NORMALIZATION,
    subset: int | None = None,
    seed: int = 0,
    download: bool = False,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Load out-of-distribution test inputs shaped like ``reference``'s inputs.

    The inputs are the test split of ``name`` (all 1,797 images for ``digits``), in ``[0, 1]``
    before normalisation. The official MP code fed SVHN to its CIFAR-10 network without
    normalisation (raw ``[0, 1]`` pixels) while the baselines normalised it; ``"none"``
    reproduces the former, ``"reference"`` the latter.

    Args:
        name: An image data set of :data:`DATASETS`, e.g. ``"svhn"`` or ``"digits"``.
        reference: The in-distribution data set.
        root: Data directory (as for :func:`load_dataset`).
        normalization: ``"reference"`` (the reference's training statistics), ``"own"`` (the
            reference's mode with statistics of these inputs) or ``"none"``.
        subset: Size of a seeded random subset (``None``: all).
        seed: Seed of the subset.
        download: Download missing files with torchvision.
        dtype: Floating dtype; default the reference's.

    Returns:
        Inputs ``(M, *reference.input_shape)``.

    Raises:
        ValueError: On an unknown name or normalisation, or inputs of another shape.
    """
    name = check_choice(
        "OOD dataset name",
        name.lower().replace("-", "_"),
        tuple(d for d in DATASETS if d != "sine"),
    )
    check_choice("normalization", normalization, ("reference", "own", "none"))
    dtype = dtype or reference.x_train.dtype
    check_dtype(dtype)
    root_path = default_root(root)
    if name == "digits":
        raw = load_digits(seed)
        x = torch.cat([raw.x_train, raw.x_test])
    elif name == "svhn":
        x = load_svhn(root_path, download, splits=("test",)).x_test
    else:
        x = load_raw(name, root_path, download, seed).x_test
    if tuple(x.shape[1:]) != reference.input_shape:
        raise ValueError(
            f"OOD set {name!r} has inputs {tuple(x.shape[1:])}, the reference "
            f"{reference.name!r} {reference.input_shape}; pick a matching OOD set"
        )
    x = _to_float(_subset(x, x, subset, "subset", np.random.default_rng([seed, 2]))[0], dtype)
    if normalization == "none":
        return x
    stats = reference.normalization
    if normalization == "own":
        stats = fit_normalization(x, stats["mode"])
    x = apply_normalization(x, stats)
    if not torch.isfinite(x).all():
        raise DataError(f"OOD set {name!r} contains NaN or inf after normalisation")
    return x


def _subset(
    x: torch.Tensor, y: torch.Tensor, size: int | None, arg: str, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded random subset, kept in the original order; nested for growing sizes."""
    if size is None:
        return x, y
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= len(x):
        raise ValueError(
            f"invalid {arg}: {size!r}; it must be an integer in [1, {len(x)}] "
            f"(the size of that split), or None for all of it"
        )
    index = torch.from_numpy(np.sort(rng.permutation(len(x))[:size]))
    return x[index], y[index]


def _to_float(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return x.to(dtype) / 255.0 if x.dtype == torch.uint8 else x.to(dtype)
