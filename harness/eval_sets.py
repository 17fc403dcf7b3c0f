"""Extra evaluation sets (shifted test images, more OOD sets), their predictions and scores.

1. :func:`build_eval_sets` makes the sets a configuration asks for from a :class:`Dataset`'s
   test images: a seeded subset of the test images is taken back to pixels in ``[0, 1]`` (the
   dataset's normalisation undone), shifted (:mod:`harness.shift`) or turned into generated OOD
   images (:mod:`harness.ood_sets`), and normalised again exactly like the test inputs; named
   OOD data sets (``mnist``, ``digits``, ...) come from a loader and are skipped, with the
   reason recorded, when they are not on disk or do not fit the inputs.
2. :func:`predict_sets` runs a trained model on every set and returns a
   :class:`SetPredictions` artefact (``sets.npz`` beside a run's ``predictions.npz``).
3. :func:`score_sets` scores it: per shifted set :func:`harness.metrics.summary_metrics`, per
   OOD set AUROC, AUPR and FPR95 by predictive entropy and by maximum probability, against
   the run's whole test set as the in-distribution side.

Set names: ``clean`` (the subset unshifted, intensity 0 of every shift), ``<shift>_<intensity>``
(e.g. ``rotation_15``, ``contrast_3``) and ``ood_<name>`` (e.g. ``ood_flipped``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from amp.io import CorruptFileError, atomic_open
from amp.runtime import Stopwatch, resolve_device
from harness import metrics
from harness.data import Dataset, DatasetNotFoundError, apply_normalization
from harness.ood_sets import SYNTHETIC_OOD, synthetic_ood
from harness.shift import CORRUPTIONS, shift_images

__all__ = [
    "EvalSet",
    "SetPredictions",
    "SetsConfig",
    "build_eval_sets",
    "predict_sets",
    "score_sets",
    "to_pixels",
]

FORMAT_VERSION = 1
"""Version of the ``.npz`` layout written by :meth:`SetPredictions.save`."""

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class SetsConfig:
    """Which extra sets to build (the ``evaluation`` section of the pipeline configuration).

    Attributes:
        subset: Test images per shifted set and images per generated OOD set (a seeded random
            subset of the test set; ``None`` for all). Named OOD sets are cut to the same size.
        seed: Seed of that subset and of the random corruptions and noise images.
        rotations: Angles in degrees (0 is the clean subset).
        corruptions: Names of :data:`harness.shift.CORRUPTIONS`.
        severities: Severities 1-5 of every corruption.
        ood_sets: Generated sets (:data:`harness.ood_sets.SYNTHETIC_OOD`) and named data sets.
    """

    subset: int | None = 2000
    seed: int = 0
    rotations: tuple[float, ...] = ()
    corruptions: tuple[str, ...] = ()
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    ood_sets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("rotations", "corruptions", "severities", "ood_sets"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        unknown = sorted(set(self.corruptions) - set(CORRUPTIONS))
        if unknown:
            raise ValueError(f"unknown corruptions {unknown}; use some of {CORRUPTIONS}")
        if any(not 1 <= s <= 5 for s in self.severities):
            raise ValueError(f"severities must lie in 1..5, got {self.severities}")
        if self.subset is not None and self.subset < 1:
            raise ValueError(f"invalid subset: {self.subset!r} (a positive size, or None)")

    @property
    def empty(self) -> bool:
        """Whether no set is asked for."""
        return not (self.rotations or (self.corruptions and self.severities) or self.ood_sets)


@dataclass(frozen=True, eq=False)
class EvalSet:
    """One extra evaluation set, ready for a model.

    Attributes:
        name: Unique name (see the module docstring).
        family: ``"shift"`` (labelled) or ``"ood"`` (no labels).
        kind: Shift name, ``"clean"``, or the OOD set's name.
        intensity: Angle or severity of a shift, ``None`` for OOD sets.
        inputs: Normalised inputs ``(M, *input_shape)``.
        labels: Class indices ``(M,)`` of a shifted set, ``None`` for OOD sets.
    """

    name: str
    family: str
    kind: str
    intensity: float | None
    inputs: torch.Tensor
    labels: torch.Tensor | None = None

    def describe(self) -> dict[str, Any]:
        """JSON description: name, family, kind, intensity and size."""
        return {
            "name": self.name,
            "family": self.family,
            "kind": self.kind,
            "intensity": self.intensity,
            "n": len(self.inputs),
        }


def to_pixels(x: torch.Tensor, normalization: dict[str, Any]) -> torch.Tensor:
    """Undo :func:`harness.data.apply_normalization`: ``x * std + mean``, clamped to ``[0, 1]``.

    Args:
        x: Normalised inputs ``(N, C, H, W)``.
        normalization: The statistics the inputs were normalised with (``Dataset.normalization``).

    Returns:
        Pixels in ``[0, 1]``, same shape and dtype (rounding errors of the round trip clamped).
    """
    mode = normalization["mode"]
    if mode == "none":
        return x.clamp(0.0, 1.0)
    mean = torch.as_tensor(normalization["mean"], dtype=x.dtype)
    std = torch.as_tensor(normalization["std"], dtype=x.dtype)
    if mode == "per_channel":
        view = (1, -1) + (1,) * (x.dim() - 2)
        mean, std = mean.view(view), std.view(view)
    return (x * std + mean).clamp(0.0, 1.0)


def _subset_index(n: int, size: int | None, seed: int) -> torch.Tensor:
    if size is None or size >= n:
        return torch.arange(n)
    return torch.from_numpy(np.sort(np.random.default_rng([seed, 3]).permutation(n)[:size]))


def _intensity_name(value: float) -> str:
    return f"{value:g}".replace("-", "m")


def build_eval_sets(
    dataset: Dataset,
    config: SetsConfig,
    load_named: Callable[[str], torch.Tensor] | None = None,
) -> tuple[list[EvalSet], dict[str, str]]:
    """Build the shifted and OOD sets of ``config`` from a data set's test images.

    Args:
        dataset: An image classification data set (inputs ``(N, C, H, W)``).
        config: Which sets.
        load_named: Loads a named OOD data set's inputs, normalised for the model (for example
            :func:`harness.data.load_ood`); may raise :class:`harness.data.DatasetNotFoundError`
            (not on disk) or ``ValueError`` (inputs of another shape), which skip the set.

    Returns:
        The sets (``clean`` first when any shift is asked for) and the skipped named OOD sets
        with the reason.

    Raises:
        ValueError: If the data set is not image classification.
    """
    if dataset.task != "classification" or len(dataset.input_shape) != 3:
        raise ValueError(
            f"extra evaluation sets need image classification data, got {dataset.name!r} "
            f"({dataset.task}, inputs {dataset.input_shape})"
        )
    index = _subset_index(len(dataset.x_test), config.subset, config.seed)
    pixels = to_pixels(dataset.x_test[index], dataset.normalization)
    labels = dataset.y_test[index]

    def normalised(x: torch.Tensor) -> torch.Tensor:
        return apply_normalization(x, dataset.normalization)

    sets: list[EvalSet] = []
    shifts = [("rotation", float(a)) for a in config.rotations if a != 0]
    shifts += [(c, float(s)) for c in config.corruptions for s in config.severities]
    if shifts or 0 in config.rotations:
        sets.append(EvalSet("clean", "shift", "clean", 0.0, dataset.x_test[index].clone(), labels))
    for kind, value in shifts:
        x = shift_images(pixels, kind, value, seed=config.seed)
        name = f"{kind}_{_intensity_name(value)}"
        sets.append(EvalSet(name, "shift", kind, value, normalised(x), labels))
    skipped: dict[str, str] = {}
    for name in config.ood_sets:
        if name in SYNTHETIC_OOD:
            x = normalised(synthetic_ood(name, pixels, seed=config.seed))
        elif name == dataset.name:
            skipped[name] = "it is the in-distribution data set"
            continue
        elif load_named is None:
            skipped[name] = "no loader for named data sets was given"
            continue
        else:
            try:
                x = load_named(name)
            except DatasetNotFoundError:
                skipped[name] = "not on disk here (data.download, or its files under the data root)"
                continue
            except ValueError as err:  # inputs of another shape than the data set's
                skipped[name] = str(err).splitlines()[0]
                continue
            x = x[_subset_index(len(x), config.subset, config.seed)].to(dataset.x_test.dtype)
        sets.append(EvalSet(f"ood_{name}", "ood", name, None, x))
    return sets, skipped


@dataclass(frozen=True, eq=False)
class SetPredictions:
    """Predictive probabilities of one trained model on the extra sets (``sets.npz``).

    Attributes:
        probs: Set name to probabilities ``(M, K)``.
        labels: Set name to class indices ``(M,)``, for the labelled (shifted) sets.
        metadata: JSON: ``sets`` (descriptions, :meth:`EvalSet.describe`), ``skipped``
            (name to reason), and the run's identity and timings.
    """

    probs: dict[str, np.ndarray]
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in [*self.probs, *self.labels]:
            if not _NAME.match(name):
                raise ValueError(f"invalid set name {name!r} (letters, digits, _ . - only)")
        probs = {k: np.asarray(v) for k, v in self.probs.items()}
        labels = {k: np.asarray(v) for k, v in self.labels.items()}
        for name, value in probs.items():
            if value.ndim != 2:
                raise ValueError(f"probabilities of set {name!r} must be (M, K), got {value.shape}")
            if name in labels and labels[name].shape != (len(value),):
                raise ValueError(f"labels of set {name!r} do not match its {len(value)} rows")
        if set(labels) - set(probs):
            raise ValueError(f"labels without probabilities: {sorted(set(labels) - set(probs))}")
        object.__setattr__(self, "probs", probs)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "metadata", json.loads(json.dumps(self.metadata)))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the artefact atomically to ``path`` (``.npz``)."""
        arrays = {f"probs/{k}": v for k, v in self.probs.items()}
        arrays |= {f"labels/{k}": v for k, v in self.labels.items()}
        path = Path(path)
        with atomic_open(path, "wb") as handle:
            np.savez(
                handle,
                format_version=np.array(FORMAT_VERSION),
                metadata=np.array(json.dumps(self.metadata, sort_keys=True)),
                **arrays,
            )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> SetPredictions:
        """Read an artefact written by :meth:`save`.

        Raises:
            FileNotFoundError: If ``path`` does not exist.
            amp.io.CorruptFileError: If the file is damaged or not such an artefact.
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no set predictions at {path}")
        try:
            with np.load(path, allow_pickle=False) as archive:
                contents = {key: archive[key] for key in archive.files}
            if int(contents.pop("format_version")) != FORMAT_VERSION:
                raise ValueError("unknown format version")
            metadata = json.loads(str(contents.pop("metadata")))
            groups: dict[str, dict[str, np.ndarray]] = {"probs": {}, "labels": {}}
            for key, value in contents.items():
                group, name = key.split("/", 1)
                groups[group][name] = value
            return cls(groups["probs"], groups["labels"], metadata)
        except Exception as err:  # zipfile, numpy, JSON and layout errors of a damaged file
            raise CorruptFileError(
                f"set predictions {path} are corrupt or not written by SetPredictions "
                f"({type(err).__name__}: {err}); delete the file and rerun the rule that "
                "writes it"
            ) from err


def predict_sets(
    predict: Callable[[torch.Tensor], torch.Tensor],
    sets: Sequence[EvalSet],
    *,
    skipped: dict[str, str] | None = None,
    metadata: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> SetPredictions:
    """Predict every set with a trained model.

    Args:
        predict: Inputs ``(M, ...)`` to probabilities ``(M, K)``
            (:func:`harness.runs.restore.load_predictor`).
        sets: The sets of :func:`build_eval_sets`.
        skipped: Named sets that were skipped, with the reason (recorded).
        metadata: Further JSON fields (method, seed, ...).
        device: Device the model runs on, for the timer.

    Returns:
        The artefact; ``metadata["predict_seconds"]`` is the time of all predictions.
    """
    watch = Stopwatch(resolve_device(device))
    probs, labels = {}, {}
    for item in sets:
        with watch:
            probs[item.name] = predict(item.inputs).detach().cpu().numpy()
        if item.labels is not None:
            labels[item.name] = item.labels.cpu().numpy()
    meta = {
        **(metadata or {}),
        "sets": [item.describe() for item in sets],
        "skipped": dict(skipped or {}),
        "predict_seconds": watch.seconds,
    }
    return SetPredictions(probs, labels, meta)


def score_sets(
    predictions: SetPredictions,
    test_probs: np.ndarray,
    extra_ood: dict[str, np.ndarray] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Scores of every set: accuracy and calibration under shift, detection of OOD sets.

    Args:
        predictions: The artefact of :func:`predict_sets`.
        test_probs: The model's probabilities on its whole test set ``(N, K)`` (the
            in-distribution side of every OOD score).
        extra_ood: Further OOD sets' probabilities by name, e.g. the experiment's own OOD set
            from ``predictions.npz``.

    Returns:
        ``{"shift": [...], "ood": [...], "skipped": {...}}``: one shift row per labelled set
        (``kind``, ``intensity``, ``n`` and :func:`harness.metrics.summary_metrics`), one OOD
        row per set and score (``set``, ``score``, ``n``, ``auroc``, ``aupr``, ``fpr95``).
    """
    described = {item["name"]: item for item in predictions.metadata.get("sets", [])}
    shift_rows, ood_rows = [], []
    ood = dict(extra_ood or {})
    for name, probs in predictions.probs.items():
        family = "shift" if name in predictions.labels else "ood"
        info = {"family": family, "kind": name, "intensity": None} | described.get(name, {})
        if info["family"] == "ood":
            ood[info["kind"]] = probs
            continue
        row = {"kind": info["kind"], "intensity": info["intensity"], "n": len(probs)}
        shift_rows.append(row | metrics.summary_metrics(probs, predictions.labels[name]))
    for name, probs in ood.items():
        for score in metrics.OOD_SCORES:
            result = metrics.ood_scores(test_probs, probs, score=score)
            ood_rows.append({"set": name, "score": score, "n": len(probs), **result})
    skipped = predictions.metadata.get("skipped", {})
    return {"shift": shift_rows, "ood": ood_rows, "skipped": skipped}
