"""One method on one UCI set: noise selection by validation, training, scores per split.

For each configured split ``K`` (all splits of a set train together, :mod:`harness.uci.fit`):

1. **Selection, test-free.** The training rows of split ``K`` are divided at random (seeded) into
   80 % for training and 20 % for validation, normalised with the 80 %'s statistics
   (:func:`harness.data.uci.load_uci` with ``validation=True``). A network is trained with every
   noise variance of the grid, and the variance with the best validation log-likelihood is
   chosen for split ``K``, as the MC-dropout protocol tunes its precision. AdamW's training does
   not depend on the variance (:class:`~harness.uci.protocol.AdamWSettings`): it trains once and
   scores every variance on the same predictions. A variance whose training diverges scores
   ``-inf``.
2. **Final run.** A network is trained on the whole training split with the chosen variance
   (splits that chose the same variance train together) and predicts the test rows.
3. **Scores** in the target's original units (:mod:`harness.uci.scoring`).

``train_seconds`` of a split is the final training's wall-clock time divided by the number of
splits trained with it (the cost per split when they train together); ``selection_seconds``
likewise for step 1.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from amp.io import CorruptFileError, atomic_open, write_json
from amp.trainer import DivergenceError as MPDivergenceError
from baselines.train import DivergenceError as BaselineDivergenceError
from harness.data import Dataset
from harness.data.uci import load_uci, to_original_units, uci_set
from harness.uci.fit import Fit, fit_predict
from harness.uci.protocol import AdamWSettings, MPSettings, Protocol, Settings, method_settings
from harness.uci.scoring import split_metrics

__all__ = ["UCIRun", "load_run", "run_uci", "save_run"]

_log = logging.getLogger(__name__)
_DIVERGED = (MPDivergenceError, BaselineDivergenceError, torch.linalg.LinAlgError)


@dataclass
class UCIRun:
    """What one method did on one set.

    Attributes:
        name: The set.
        method: ``"mp"``, ``"adamw"`` or ``"ivon"``.
        records: One JSON-friendly record per split: ``split``, ``noise_var``,
            ``validation_ll`` (per grid value, normalised units), ``metrics``
            (:func:`~harness.uci.scoring.split_metrics`), ``train_seconds``,
            ``selection_seconds``, ``epochs``, ``n_train``, ``n_test``.
        predictions: Per split ``{"mean", "var", "y"}`` on the test rows, original units.
        settings: The settings and protocol used (JSON-friendly).
    """

    name: str
    method: str
    records: list[dict[str, Any]] = field(default_factory=list)
    predictions: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


def _stack(datasets: Sequence[Dataset]) -> tuple[torch.Tensor, ...]:
    """Training inputs/targets and test inputs of several splits, ``(R, N, ...)`` each."""
    return tuple(
        torch.stack([getattr(d, key) for d in datasets]) for key in ("x_train", "y_train", "x_test")
    )


def run_uci(
    name: str,
    method: str,
    settings: Settings,
    splits: Sequence[int],
    protocol: Protocol | None = None,
    *,
    root: str | None = None,
) -> UCIRun:
    """Select the noise variance, train and score ``method`` on the given splits of ``name``.

    Args:
        name: A UCI set (:data:`harness.data.uci.UCI_SETS`).
        method: ``"mp"``, ``"adamw"`` or ``"ivon"`` (must match ``settings``).
        settings: The method's settings (:func:`harness.uci.protocol.method_settings`).
        splits: Split indices, at least one.
        protocol: Noise grid and seeds; default :class:`~harness.uci.protocol.Protocol`.
        root: Directory of the UCI archives (default: the repository's ``data/uci``).

    Returns:
        The per-split records and test predictions.

    Raises:
        ValueError: On an empty or invalid list of splits, or settings of another method.
        amp.trainer.DivergenceError, baselines.train.DivergenceError: If a final training
            diverges (the message names the splits and the variance), or a split's validation
            trainings diverge at every variance of the grid.
    """
    protocol = protocol or Protocol()
    expected = type(method_settings(method))
    if not isinstance(settings, expected):
        raise ValueError(
            f"settings {type(settings).__name__} do not belong to method {method!r}; use "
            f"harness.uci.protocol.method_settings({method!r}, ...)"
        )
    splits = [int(k) for k in splits]
    if not splits or len(set(splits)) != len(splits):
        raise ValueError(f"invalid splits {splits!r} (distinct split indices, at least one)")
    for k in splits:
        if not 0 <= k < uci_set(name).splits:
            raise ValueError(f"invalid split {k} for uci/{name} (0..{uci_set(name).splits - 1})")
    run = UCIRun(name, method, settings={"method": method, **_settings_dict(settings, protocol)})
    scores, selection_seconds = _select(name, settings, splits, protocol, root)
    grid = protocol.noise_grid
    chosen = {k: grid[int(np.argmax(scores[i]))] for i, k in enumerate(splits)}
    final = {k: load_uci(name, k, root=root) for k in splits}
    trainings = []  # (splits trained together, their fit, whether they were retrained alone)
    for noise_var in sorted(set(chosen.values())):
        group = [k for k in splits if chosen[k] == noise_var]
        try:
            fit = _final_fit(name, method, settings, final, group, noise_var, protocol)
        except _DIVERGED as err:
            if len(group) == 1:
                raise
            # one network's divergence stops the whole batched training: train each alone
            _log.warning("%s; training each of these splits alone", err)
            for k in group:
                fit = _final_fit(name, method, settings, final, [k], noise_var, protocol)
                trainings.append(([k], fit, True))
            continue
        trainings.append((group, fit, False))
    for group, fit, alone in trainings:
        noise_var = chosen[group[0]]
        for i, k in enumerate(group):
            data = final[k]
            mean, var = to_original_units(data, fit.mean[i], fit.var[i])
            targets, _ = to_original_units(data, data.y_test[:, 0].double().numpy())
            run.predictions[k] = {"mean": mean, "var": var, "y": targets}
            run.records.append(
                {
                    "split": k,
                    "noise_var": noise_var,
                    "validation_ll": {
                        f"{v:g}": _finite(s)
                        for v, s in zip(grid, scores[splits.index(k)], strict=True)
                    },
                    "metrics": split_metrics(mean, var, targets),
                    "train_seconds": fit.seconds / len(group),
                    "selection_seconds": selection_seconds / len(splits),
                    "epochs": fit.epochs,
                    "n_train": len(data.x_train),
                    "n_test": len(data.x_test),
                    "trained_alone": alone,
                }
            )
    run.records.sort(key=lambda r: r["split"])
    return run


def _final_fit(
    name: str,
    method: str,
    settings: Settings,
    final: dict[int, Dataset],
    group: list[int],
    noise_var: float,
    protocol: Protocol,
) -> Fit:
    """Train the splits of ``group`` together on their whole training rows; predict the test rows.

    Raises:
        amp.trainer.DivergenceError, baselines.train.DivergenceError: If the training diverges
            (the message names the splits and the noise variance).
    """
    x, y, x_test = _stack([final[k] for k in group])
    try:
        fit = fit_predict(name, settings, x, y, x_test, noise_var, splits=group, seed=protocol.seed)
    except _DIVERGED as err:
        raise type(err)(
            f"uci/{name} {method}: the final training of splits {group} with noise variance "
            f"{noise_var:g} diverged: {err}"
        ) from err
    _log.info(
        "uci/%s %s: splits %s, noise %g trained in %.1f s",
        name,
        method,
        group,
        noise_var,
        fit.seconds,
    )
    return fit


def _select(
    name: str, settings: Settings, splits: list[int], protocol: Protocol, root: str | None
) -> tuple[np.ndarray, float]:
    """Validation log-likelihood ``(R, G)`` of every split and grid value, and the time spent."""
    grid = protocol.noise_grid
    held = [
        load_uci(name, k, root=root, validation=True, validation_seed=protocol.validation_seed)
        for k in splits
    ]
    x, y, x_val = _stack(held)
    y_val = torch.stack([d.y_test[:, 0] for d in held]).double().numpy()
    scores = np.full((len(splits), len(grid)), -np.inf)
    seconds = 0.0
    # AdamW's steps do not depend on the noise variance: train once, score every variance.
    trainings = [1.0] if isinstance(settings, AdamWSettings) else list(grid)
    for train_var in trainings:
        try:
            fit = fit_predict(
                name, settings, x, y, x_val, train_var, splits=splits, seed=protocol.seed
            )
        except _DIVERGED as err:
            _log.warning(
                "uci/%s: validation training with noise %g diverged (%s)", name, train_var, err
            )
            continue
        seconds += fit.seconds
        for j, noise_var in enumerate(grid):
            if isinstance(settings, AdamWSettings):
                var = np.full_like(fit.mean, noise_var)
            elif noise_var == train_var:
                var = fit.var
            else:
                continue
            scores[:, j] = _log_likelihood(fit.mean, var, y_val)
        _log.info(
            "uci/%s: validation with noise %g: mean LL %s",
            name,
            train_var,
            np.round(scores.mean(0), 3),
        )
    if not np.isfinite(scores).any(axis=1).all():
        failed = [k for k, row in zip(splits, scores, strict=True) if not np.isfinite(row).any()]
        error = MPDivergenceError if isinstance(settings, MPSettings) else BaselineDivergenceError
        raise error(
            f"uci/{name}: the validation training diverged at every noise variance of the grid "
            f"for splits {failed}; check the data, or try other settings"
        )
    return scores, seconds


def _log_likelihood(mean: np.ndarray, var: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean Gaussian log-likelihood per row of ``(R, M)`` arrays; NaN becomes ``-inf``."""
    ll = -0.5 * (np.log(2 * np.pi * var) + (y - mean) ** 2 / var)
    out = ll.mean(axis=1)
    return np.where(np.isfinite(out), out, -np.inf)


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _settings_dict(settings: Settings, protocol: Protocol) -> dict[str, Any]:
    return {"settings": asdict(settings), "protocol": asdict(protocol)}


def save_run(run: UCIRun, json_path: str | os.PathLike, npz_path: str | os.PathLike) -> None:
    """Write a run's records and settings (JSON) and its test predictions (``.npz``).

    The arrays are named ``split<K>_<mean|var|y>``, each ``(M,)`` in original units.
    """
    write_json(
        json_path,
        {"name": run.name, "method": run.method, "settings": run.settings, "records": run.records},
    )
    arrays = {
        f"split{k}_{key}": np.asarray(value)
        for k, entry in run.predictions.items()
        for key, value in entry.items()
    }
    with atomic_open(npz_path, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def load_run(json_path: str | os.PathLike) -> dict[str, Any]:
    """Read a run written by :func:`save_run` (``{"name", "method", "settings", "records"}``).

    Raises:
        amp.io.CorruptFileError: If the file is damaged or lacks a key; the message says how to
            recreate it.
    """
    try:
        data = json.loads(Path(json_path).read_text())
        if not {"name", "method", "records"} <= set(data) or not data["records"]:
            raise ValueError("missing 'name', 'method' or 'records'")
    except (OSError, ValueError) as err:
        raise CorruptFileError(
            f"{json_path} is not a UCI run ({err}); delete it and rerun its train_uci job"
        ) from err
    return data
