"""The :class:`Dataset` container, its errors, summaries and the on-disk cache.

A :class:`Dataset` checks itself on construction (shapes, dtypes, finite values, label range), so
every loader and :func:`load_saved_dataset` hand out only valid data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch

from amp.io import load_checkpoint, save_checkpoint

__all__ = [
    "NORMALIZATIONS",
    "TRAIN_FRACTION",
    "DataError",
    "Dataset",
    "DatasetNotFoundError",
    "check_choice",
    "check_dtype",
    "describe",
    "load_saved_dataset",
    "save_dataset",
]

NORMALIZATIONS = ("global", "per_channel", "none")
"""Normalisation modes; see the module docstring."""


TRAIN_FRACTION = 0.8
"""Share of the training split for data sets generated or split here (sine, digits)."""


class DataError(ValueError):
    """Data that exist but are malformed: corrupt files, NaN/inf values, labels out of range."""


class DatasetNotFoundError(FileNotFoundError):
    """A data set is not on disk (and was not downloaded); the message says how to get it."""


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A train/test pair of tensors with everything needed to interpret them.

    Args:
        name: Data set name, e.g. ``"fashion_mnist"``.
        task: ``"classification"`` or ``"regression"``.
        x_train: Inputs ``(N, *input_shape)``, floating point.
        y_train: Labels ``(N,)`` int64 in ``[0, num_classes)``, or targets ``(N, 1)`` float.
        x_test: Inputs ``(M, *input_shape)``.
        y_test: Labels ``(M,)`` or targets ``(M, 1)``.
        input_shape: Shape of one input, e.g. ``(1, 28, 28)`` or ``(1,)``.
        num_classes: Number of classes (classification) or ``None``.
        classes: Class names, or ``None``.
        normalization: What was applied, ``{"mode", "mean", "std"}`` (:func:`fit_normalization`).
        metadata: JSON-friendly provenance (source directory, seed, subset sizes, ...).

    Raises:
        DataError: If shapes disagree, a value is NaN/inf, or a label is out of range.
    """

    name: str
    task: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    input_shape: tuple[int, ...]
    num_classes: int | None
    classes: tuple[str, ...] | None
    normalization: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(self.classes))
        if self.task not in ("classification", "regression"):
            raise DataError(f"{self.name}: task must be 'classification' or 'regression'")
        if self.normalization.get("mode") not in NORMALIZATIONS:
            raise DataError(f"{self.name}: normalization must record a mode of {NORMALIZATIONS}")
        for split in ("train", "test"):
            _check_split(self, split)

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, task={self.task!r}, train={len(self.x_train)}, "
            f"test={len(self.x_test)}, input_shape={self.input_shape}, "
            f"normalization={self.normalization['mode']!r}, dtype={self.x_train.dtype})"
        )


def _check_split(data: Dataset, split: str) -> None:
    x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
    where = f"{data.name} ({split} split)"
    if not x.is_floating_point() or tuple(x.shape[1:]) != data.input_shape:
        raise DataError(
            f"{where}: inputs must be float {('N', *data.input_shape)}, got {x.dtype} "
            f"{tuple(x.shape)}"
        )
    if len(y) != len(x):
        raise DataError(f"{where}: {len(x)} inputs but {len(y)} targets")
    if not torch.isfinite(x).all():
        raise DataError(f"{where}: inputs contain NaN or inf; check the source files")
    if data.task == "regression":
        if data.num_classes is not None or not y.is_floating_point() or y.shape[1:] != (1,):
            raise DataError(f"{where}: regression needs float targets (N, 1) and num_classes None")
        if not torch.isfinite(y).all():
            raise DataError(f"{where}: targets contain NaN or inf")
        return
    k = data.num_classes
    if not isinstance(k, int) or k < 2:
        raise DataError(f"{where}: num_classes must be an integer >= 2, got {k!r}")
    if data.classes is not None and len(data.classes) != k:
        raise DataError(f"{where}: {len(data.classes)} class names for {k} classes")
    if y.dtype != torch.int64 or y.dim() != 1:
        raise DataError(f"{where}: labels must be int64 (N,), got {y.dtype} {tuple(y.shape)}")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= k):
        raise DataError(
            f"{where}: labels must lie in [0, {k - 1}], found {int(y.min())}..{int(y.max())}"
        )


def check_choice(arg: str, value: str, known: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``known``; else a ``ValueError`` naming ``arg``."""
    if value not in known:
        raise ValueError(f"unknown {arg}: {value!r}; known: {', '.join(known)}")
    return value


def check_dtype(dtype: torch.dtype) -> None:
    """Refuse anything but a floating-point ``torch.dtype`` (``ValueError``)."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"invalid dtype: {dtype!r}; use a floating dtype such as torch.float64")


# ---- summaries and caching -----------------------------------------------------------------------


def describe(dataset: Dataset) -> dict[str, Any]:
    """JSON-friendly summary: sizes, shapes, class counts, normalisation and input statistics."""

    def counts(labels: torch.Tensor) -> list[int] | None:
        if dataset.num_classes is None:
            return None
        return torch.bincount(labels, minlength=dataset.num_classes).tolist()

    x = dataset.x_train.to(torch.float64)
    return {
        "name": dataset.name,
        "task": dataset.task,
        "n_train": len(dataset.x_train),
        "n_test": len(dataset.x_test),
        "input_shape": list(dataset.input_shape),
        "num_classes": dataset.num_classes,
        "classes": None if dataset.classes is None else list(dataset.classes),
        "class_counts_train": counts(dataset.y_train),
        "class_counts_test": counts(dataset.y_test),
        "normalization": dataset.normalization,
        "dtype": str(dataset.x_train.dtype),
        "x_train_mean": float(x.mean()),
        "x_train_std": float(x.std()) if x.numel() > 1 else 0.0,
        "metadata": dataset.metadata,
    }


_SAVED_FIELDS = (
    "name",
    "task",
    "x_train",
    "y_train",
    "x_test",
    "y_test",
    "input_shape",
    "num_classes",
    "classes",
    "normalization",
    "metadata",
)


def save_dataset(dataset: Dataset, path: str | os.PathLike) -> None:
    """Cache a prepared data set atomically (``torch.save`` via :func:`amp.io.save_checkpoint`)."""
    state = {key: getattr(dataset, key) for key in _SAVED_FIELDS}
    save_checkpoint(path, {"format": "harness.data.Dataset", **state})


def load_saved_dataset(path: str | os.PathLike) -> Dataset:
    """Load a data set written by :func:`save_dataset` (validated again on construction).

    Raises:
        FileNotFoundError: If the file is missing.
        amp.io.CorruptFileError: If it is damaged or not written by :func:`save_dataset`.
    """
    state = load_checkpoint(path, required_keys=("format", *_SAVED_FIELDS))
    return Dataset(**{key: state[key] for key in _SAVED_FIELDS})
