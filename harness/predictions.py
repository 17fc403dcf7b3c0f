"""One prediction artifact for every method: the arrays that all metrics are computed from.

A :class:`Predictions` holds either classification output (predictive probabilities, labels and
optionally probabilities on out-of-distribution data) or regression output (Gaussian predictive
mean and variance, targets and optionally the inputs ``x``), plus JSON metadata (method,
dataset, architecture, seed, timings, ...). It is saved as one ``.npz`` file, written atomically,
with the metadata as a JSON string inside; :meth:`Predictions.load` refuses damaged files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from amp.io import CorruptFileError, atomic_open
from harness.metrics import classification_metrics, regression_metrics

__all__ = ["FORMAT_VERSION", "Predictions"]

FORMAT_VERSION: int = 1
"""Version of the ``.npz`` layout written by :meth:`Predictions.save`."""

_CLASSIFICATION = ("probs", "labels", "probs_ood")
_REGRESSION = ("mean", "var", "targets", "x")
_REQUIRED = {"classification": ("probs", "labels"), "regression": ("mean", "var", "targets")}


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor on any device
        value = value.detach().cpu()
        if value.is_floating_point() and value.element_size() < 4:  # bfloat16/half: no numpy twin
            value = value.float()
        value = value.numpy()
    array = np.array(value, copy=True)
    array.flags.writeable = False
    return array


@dataclass(frozen=True, eq=False)
class Predictions:
    """Predictions of one trained model on one evaluation set (read-only arrays).

    Classification fields: ``probs`` ``(N, K)`` predictive probabilities, ``labels`` ``(N,)``
    integer classes, optional ``probs_ood`` ``(M, K)`` on out-of-distribution inputs.
    Regression fields: ``mean``, ``var`` and ``targets`` of shape ``(N,)`` or ``(N, D)``,
    optional ``x`` ``(N, ...)`` (e.g. the input grid of a toy problem). Exactly one of the two
    groups may be set. Arrays are copied (torch tensors moved to the CPU) and made read-only;
    their dtype is kept. Only shapes are checked here; values are checked by :meth:`metrics`.

    Attributes:
        metadata: JSON-serialisable description (method, dataset, arch, seed, timings, ...).
    """

    probs: np.ndarray | None = None
    labels: np.ndarray | None = None
    probs_ood: np.ndarray | None = None
    mean: np.ndarray | None = None
    var: np.ndarray | None = None
    targets: np.ndarray | None = None
    x: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in _CLASSIFICATION + _REGRESSION:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _to_numpy(value))
        try:
            metadata = json.loads(json.dumps(dict(self.metadata)))
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"metadata must be JSON-serialisable ({err}); convert numpy scalars and paths "
                "to plain Python numbers and strings"
            ) from err
        object.__setattr__(self, "metadata", metadata)
        self._check_shapes()

    @property
    def kind(self) -> str:
        """``"classification"`` or ``"regression"``."""
        return "classification" if self.probs is not None else "regression"

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays that are set, by field name."""
        names = _CLASSIFICATION + _REGRESSION
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}

    def _check_shapes(self) -> None:
        has_cls = any(getattr(self, n) is not None for n in _CLASSIFICATION)
        has_reg = any(getattr(self, n) is not None for n in _REGRESSION)
        if has_cls == has_reg:
            raise ValueError(
                "Predictions needs either classification arrays (probs, labels[, probs_ood]) "
                "or regression arrays (mean, var, targets[, x]), "
                + ("not both" if has_cls else "got neither")
            )
        missing = [n for n in _REQUIRED[self.kind] if getattr(self, n) is None]
        if missing:
            raise ValueError(f"{self.kind} predictions lack {missing}; pass them as well")
        if self.kind == "classification":
            if self.probs.ndim != 2:
                raise ValueError(f"probs must be (N, K), got shape {self.probs.shape}")
            if self.labels.shape != (self.probs.shape[0],):
                raise ValueError(
                    f"labels shape {self.labels.shape} does not match probs {self.probs.shape}; "
                    "expected one label per row of probs"
                )
            ood = self.probs_ood
            if ood is not None and (ood.ndim != 2 or ood.shape[1] != self.probs.shape[1]):
                raise ValueError(
                    f"probs_ood must be (M, {self.probs.shape[1]}) like probs, got {ood.shape}"
                )
        else:
            if self.mean.ndim not in (1, 2):
                raise ValueError(f"mean must be (N,) or (N, D), got shape {self.mean.shape}")
            for name in ("var", "targets"):
                if getattr(self, name).shape != self.mean.shape:
                    raise ValueError(
                        f"{name} shape {getattr(self, name).shape} differs from mean shape "
                        f"{self.mean.shape}; they must be equal"
                    )
            if self.x is not None and (self.x.ndim == 0 or len(self.x) != len(self.mean)):
                raise ValueError(f"x must have {len(self.mean)} rows like mean, got {self.x.shape}")

    def metrics(self) -> dict[str, float]:
        """Score the predictions with the benchmark's metrics.

        Returns:
            :func:`harness.metrics.classification_metrics` or
            :func:`harness.metrics.regression_metrics` of the stored arrays.
        """
        if self.kind == "classification":
            return classification_metrics(self.probs, self.labels, self.probs_ood)
        return regression_metrics(self.mean, self.var, self.targets)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the predictions to ``path`` (an ``.npz`` file) atomically.

        Args:
            path: Destination; the parent directory is created if missing.

        Returns:
            The path written.
        """
        path = Path(path)
        header = {
            "format_version": np.array(FORMAT_VERSION),
            "kind": np.array(self.kind),
            "metadata": np.array(json.dumps(self.metadata, sort_keys=True)),
        }
        with atomic_open(path, "wb") as handle:
            np.savez(handle, **header, **self.arrays())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Predictions:
        """Read predictions written by :meth:`save`.

        Args:
            path: An ``.npz`` file.

        Returns:
            The predictions.

        Raises:
            FileNotFoundError: If ``path`` does not exist.
            CorruptFileError: If the file is truncated or corrupt, was not written by
                :meth:`save`, or holds arrays of inconsistent shapes.
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no predictions file at {path}")
        try:
            with np.load(path, allow_pickle=False) as archive:
                contents = {key: archive[key] for key in archive.files}
        except Exception as err:  # zipfile, numpy and OS errors for damaged archives
            raise CorruptFileError(
                f"predictions file {path} is corrupt or truncated ({type(err).__name__}: {err}); "
                "delete it and re-run the evaluation that writes it"
            ) from err
        missing = [key for key in ("format_version", "kind", "metadata") if key not in contents]
        if missing:
            raise CorruptFileError(f"{path} lacks {missing}; it was not written by Predictions")
        version = int(contents.pop("format_version"))
        if version != FORMAT_VERSION:
            raise CorruptFileError(
                f"{path} has format version {version}, this code reads {FORMAT_VERSION}"
            )
        kind = str(contents.pop("kind"))
        try:
            metadata = json.loads(str(contents.pop("metadata")))
            known = {f.name for f in fields(cls)} - {"metadata"}
            unknown = sorted(set(contents) - known)
            if unknown:
                raise ValueError(f"unknown arrays {unknown}")
            predictions = cls(**contents, metadata=metadata)
            if predictions.kind != kind:
                raise ValueError(f"header says {kind!r} but the arrays are {predictions.kind}")
        except ValueError as err:  # includes json.JSONDecodeError
            raise CorruptFileError(f"predictions file {path} is inconsistent: {err}") from err
        return predictions
