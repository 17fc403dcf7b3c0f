"""Tables beyond the final snapshot: per-epoch learning curves, selective prediction, shift, OOD.

Every function reads the runs' ``metrics.json`` records (:func:`harness.report.run_record`) and
aggregates over seeds as the main table does: mean and standard error (sample SD / √n, empty
for one seed).

- :func:`epoch_frame` / :func:`aggregate_epochs`: the test scores after every epoch
  (:func:`harness.metrics.summary_metrics`) against epoch and cumulative training seconds.
- :data:`SELECTIVE_COLUMNS`: the selective-prediction table (accuracy after rejecting 10, 25,
  50 % of the least confident, area under the accuracy–rejection curve, AURC, E-AURC), rendered
  by :func:`harness.report.render_table`.
- :func:`shift_frame` / :func:`render_shift_table`: accuracy, NLL and calibration against the
  intensity of every shift (``clean`` is intensity 0 of each).
- :func:`ood_frame` / :func:`render_ood_table`: AUROC, AUPR and FPR95 per OOD set, by
  predictive entropy and by maximum probability.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.report import METHOD_LABELS, Column
from harness.shift import SHIFT_KINDS

__all__ = [
    "EPOCH_METRICS",
    "SELECTIVE_COLUMNS",
    "aggregate_epochs",
    "epoch_frame",
    "evaluation_notes",
    "load_records",
    "mean_se",
    "ood_frame",
    "read_epochs",
    "render_epoch_table",
    "render_ood_table",
    "render_shift_table",
    "shift_frame",
]

EPOCH_METRICS = ("accuracy", "nll", "ece_15", "ece_mv", "overconfidence")
"""Per-epoch test scores shown in the learning curves and read by the claims."""

SELECTIVE_COLUMNS = (
    Column("accuracy", "Acc. (%)", 100, 2, "accuracy on all test examples."),
    Column(
        "accuracy_reject_10",
        "Acc. @10 % (%)",
        100,
        2,
        "accuracy on the examples kept after rejecting the 10 % least confident (top-label "
        "probability; ties in random order, averaged exactly).",
    ),
    Column("accuracy_reject_25", "Acc. @25 % (%)", 100, 2, "as before, 25 % rejected."),
    Column("accuracy_reject_50", "Acc. @50 % (%)", 100, 2, "as before, 50 % rejected."),
    Column(
        "ar_area",
        "AR area",
        1,
        4,
        "area under the accuracy–rejection curve over all rejection levels (trapezoids, as the "
        "authors' evaluation code); higher is better.",
    ),
    Column(
        "aurc",
        "AURC",
        1,
        4,
        "area under the risk–coverage curve, the mean error over all coverages (Geifman et al. "
        "2019); lower is better.",
    ),
    Column(
        "eaurc",
        "E-AURC",
        1,
        4,
        "AURC minus that of the ideal ranking of the same predictions: the cost of ranking "
        "alone, free of the accuracy; lower is better.",
    ),
)
"""Columns of the selective-prediction table."""

SHIFT_METRICS = (
    ("accuracy", "Acc. (%)", 100, 2),
    ("nll", "NLL", 1, 3),
    ("ece_15", "ECE-15", 1, 4),
    ("ece_mv", "ECE-paper", 1, 4),
    ("overconfidence", "Conf. − acc.", 1, 3),
)
CALIBRATION_DEFINITIONS = (
    "**ECE-15**: top-label, 15 equal-width bins. **ECE-paper**: median-variance binning, "
    "squared Euclidean (CalibrationErrors.jl). **Conf. − acc.**: mean top-label probability "
    "minus accuracy; positive is overconfident."
)
"""Definitions of :data:`SHIFT_METRICS`' calibration columns, under the epoch and shift tables."""
OOD_METRICS = (("auroc", "AUROC", 100, 1), ("aupr", "AUPR", 100, 1), ("fpr95", "FPR95", 100, 1))
SCORE_LABELS = {"entropy": "entropy", "max_prob": "max. prob."}


def load_records(paths: Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    """The ``metrics.json`` records of runs (no validation beyond JSON)."""
    return [json.loads(Path(path).read_text()) for path in paths]


def mean_se(frame: pd.DataFrame, keys: Sequence[str], values: Sequence[str]) -> pd.DataFrame:
    """Mean and standard error over seeds of ``values`` per group of ``keys``.

    Returns:
        One row per group with ``n_seeds``, ``<value>_mean`` and ``<value>_se`` (NaN for a
        single seed).
    """
    grouped = frame.groupby(list(keys), sort=True)[list(values)]
    mean = grouped.mean().add_suffix("_mean")
    se = (grouped.std(ddof=1) / np.sqrt(grouped.count())).add_suffix("_se")
    size = frame.groupby(list(keys), sort=True).size().rename("n_seeds")
    return pd.concat([size, mean, se], axis=1).reset_index()


def epoch_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (run, epoch) with a test score: its metrics and the training clock.

    Returns:
        Columns ``dataset, arch, method, seed, epoch, seconds`` (training seconds up to the end
        of the epoch, scoring excluded) and those of :data:`EPOCH_METRICS` that were recorded.
    """
    rows = []
    for record in records:
        elapsed = 0.0
        for entry in record.get("history", []):
            elapsed += float(entry["seconds"])
            test = entry.get("test") or {}
            if "accuracy" not in test:
                continue
            row = {k: record[k] for k in ("dataset", "arch", "method", "seed")}
            row |= {"epoch": int(entry["epoch"]), "seconds": elapsed}
            row |= {m: test[m] for m in EPOCH_METRICS if m in test}
            rows.append(row)
    columns = ["dataset", "arch", "method", "seed", "epoch", "seconds", *EPOCH_METRICS]
    return pd.DataFrame(rows).reindex(columns=columns)


def aggregate_epochs(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean ± SE over seeds per (dataset, arch, method, epoch) of :func:`epoch_frame`."""
    if frame.empty:
        return pd.DataFrame(columns=["dataset", "arch", "method", "epoch", "n_seeds"])
    values = ["seconds", *EPOCH_METRICS]
    numeric = frame.assign(**{v: pd.to_numeric(frame[v], errors="coerce") for v in values})
    return mean_se(numeric, ["dataset", "arch", "method", "epoch"], values)


def read_epochs(path: str | os.PathLike) -> pd.DataFrame:
    """The per-epoch aggregate of a ``summary.json`` (:func:`harness.report.write_summary`).

    Returns:
        The rows of :func:`aggregate_epochs` (empty when the summary has none).
    """
    rows = json.loads(Path(path).read_text()).get("epochs") or []
    frame = pd.DataFrame(rows)
    keys = ("dataset", "arch", "method")
    return frame.apply(lambda c: c if c.name in keys else pd.to_numeric(c, errors="coerce"))


def _order(methods: Iterable[str]) -> list[str]:
    methods = set(methods)
    return [m for m in METHOD_LABELS if m in methods] + sorted(methods - set(METHOD_LABELS))


def shift_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (run, shift, intensity); the clean subset is intensity 0 of every shift.

    Returns:
        Columns ``method, seed, kind, intensity, n`` and the summary metrics.
    """
    rows = []
    for record in records:
        shift = (record.get("sets") or {}).get("shift", [])
        kinds = sorted({r["kind"] for r in shift} - {"clean"})
        for row in shift:
            base = {"method": record["method"], "seed": record["seed"]}
            targets = (kinds or ["clean"]) if row["kind"] == "clean" else [row["kind"]]
            for kind in targets:
                rows.append(base | row | {"kind": kind})
    return pd.DataFrame(rows)


def ood_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (run, OOD set, score): ``method, seed, set, score, n, auroc, aupr, fpr95``."""
    rows = []
    for record in records:
        for row in (record.get("sets") or {}).get("ood", []):
            rows.append({"method": record["method"], "seed": record["seed"]} | row)
    return pd.DataFrame(rows)


def _cell(row: Mapping[str, Any], key: str, scale: float, decimals: int) -> str:
    mean, se = row.get(f"{key}_mean"), row.get(f"{key}_se")
    if mean is None or not np.isfinite(mean):
        return "–"
    text = f"{mean * scale:.{decimals}f}"
    return text if se is None or not np.isfinite(se) else f"{text} ± {se * scale:.{decimals}f}"


def _csv(frame: pd.DataFrame) -> str:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, float_format="%.6g", quoting=csv.QUOTE_MINIMAL)
    return buffer.getvalue()


def evaluation_notes(evaluation: Mapping[str, Any]) -> list[str]:
    """Lines under the shift and OOD tables: the configuration keys that made the sets."""
    subset = evaluation.get("subset")
    lines = [
        f"**Sets** (`evaluation`): subset {'all' if subset is None else subset} test images, "
        f"seed {evaluation.get('seed', 0)}; predicted after training from each run's model.pt "
        "(rule `predict_sets`), so changing them retrains nothing."
    ]
    if evaluation.get("rotations") or evaluation.get("corruptions"):
        lines.append(
            f"**Shift**: `evaluation.rotations` {list(evaluation.get('rotations') or [])}, "
            f"`evaluation.corruptions` {list(evaluation.get('corruptions') or [])} at "
            f"`evaluation.severities` {list(evaluation.get('severities') or [])}."
        )
    if evaluation.get("ood_sets"):
        lines.append(f"**OOD sets** (`evaluation.ood_sets`): {list(evaluation['ood_sets'])}.")
    return lines


def render_epoch_table(
    records: Sequence[Mapping[str, Any]], dataset: str, arch: str
) -> dict[str, str]:
    """Test accuracy, NLL and calibration after every epoch, every method (Markdown and CSV).

    Args:
        records: The ``metrics.json`` records of one (dataset, arch).
        dataset: Data set, for the heading.
        arch: Architecture, for the heading.

    Returns:
        ``{"md", "csv"}``; the CSV has one row per (method, epoch) with mean and SE of the
        training seconds so far and of every metric of :data:`EPOCH_METRICS`.

    Raises:
        ValueError: If no run scored the test set after its epochs.
    """
    table = aggregate_epochs(epoch_frame(records))
    if table.empty:
        raise ValueError(
            f"no per-epoch test scores for {dataset}/{arch}; set training.evaluate_every_epoch"
        )
    order = {m: i for i, m in enumerate(_order(table["method"]))}
    table = table.assign(_o=table["method"].map(order)).sort_values(["_o", "epoch"])
    columns = [("seconds", "Train s", 1, 1), *SHIFT_METRICS]
    header = ["Method", "Epoch", *[label for _, label, *_ in columns]]
    lines = [
        f"### {dataset} / {arch}: test scores after every epoch",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---", "---:"] + ["---:"] * len(columns)) + "|",
    ]
    for _, row in table.iterrows():
        cells = [_cell(row, key, scale, dec) for key, _, scale, dec in columns]
        label = METHOD_LABELS.get(row["method"], row["method"])
        lines.append(f"| {label} | {int(row['epoch'])} | " + " | ".join(cells) + " |")
    seeds = "/".join(map(str, sorted(set(table["n_seeds"]))))
    lines += [
        "",
        f"- Mean ± standard error over {seeds} seed(s). **Train s**: training wall-clock up to "
        "the end of the epoch (scoring excluded).",
        f"- {CALIBRATION_DEFINITIONS}",
        "",
    ]
    return {"md": "\n".join(lines), "csv": _csv(table.drop(columns=["_o"]))}


def render_shift_table(
    records: Sequence[Mapping[str, Any]], dataset: str, arch: str, notes: Sequence[str] = ()
) -> dict[str, str]:
    """Accuracy, NLL and calibration against shift intensity, every method (Markdown and CSV).

    Args:
        records: The ``metrics.json`` records of one (dataset, arch).
        dataset: Data set, for the heading.
        arch: Architecture, for the heading.
        notes: Extra lines under the definitions.

    Returns:
        ``{"md", "csv"}``; the CSV has one row per (shift, intensity, method) with mean and SE
        of every metric.

    Raises:
        ValueError: If no record has shifted sets.
    """
    frame = shift_frame(records)
    if frame.empty:
        raise ValueError(
            f"no shifted-set scores for {dataset}/{arch}; set evaluation.rotations or "
            "evaluation.corruptions"
        )
    metrics = [m for m, *_ in SHIFT_METRICS]
    table = mean_se(frame, ["kind", "intensity", "method"], metrics)
    order = {m: i for i, m in enumerate(_order(table["method"]))}
    kinds = {k: i for i, k in enumerate(SHIFT_KINDS)}
    table = table.assign(
        _k=table["kind"].map(lambda k: kinds.get(k, len(kinds))),
        _o=table["method"].map(order),
    ).sort_values(["_k", "kind", "intensity", "_o"], kind="stable")
    lines = [f"### {dataset} / {arch}: accuracy and calibration under shift", ""]
    for kind, rows in table.groupby("kind", sort=False):
        unit = "angle (°)" if kind == "rotation" else "severity"
        header = ["Intensity", "Method", *[label for _, label, *_ in SHIFT_METRICS]]
        lines += [f"**{kind}** ({unit}; 0 = clean)", ""]
        lines += [
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---:", "---"] + ["---:"] * 5) + "|",
        ]
        for _, row in rows.iterrows():
            cells = [_cell(row, key, scale, dec) for key, _, scale, dec in SHIFT_METRICS]
            label = METHOD_LABELS.get(row["method"], row["method"])
            lines.append(f"| {row['intensity']:g} | {label} | " + " | ".join(cells) + " |")
        lines.append("")
    n = sorted({int(v) for v in frame["n"]})
    definitions = [
        f"Mean ± standard error over {'/'.join(map(str, sorted(set(table['n_seeds']))))} "
        f"seed(s); every set holds the same {'/'.join(map(str, n))} test images.",
        "**rotation**: turned about the centre, bilinear, black fill (harness.shift.rotate). "
        "**gaussian_noise**, **gaussian_blur**, **contrast**: CIFAR-10-C corruptions at "
        "severities 1–5 (harness.shift).",
        CALIBRATION_DEFINITIONS,
        *notes,
    ]
    lines += [f"- {line}" for line in definitions] + [""]
    return {"md": "\n".join(lines), "csv": _csv(table.drop(columns=["_k", "_o"]))}


def render_ood_table(
    records: Sequence[Mapping[str, Any]], dataset: str, arch: str, notes: Sequence[str] = ()
) -> dict[str, str]:
    """AUROC, AUPR and FPR95 per OOD set and method, by entropy and by maximum probability.

    Args:
        records: The ``metrics.json`` records of one (dataset, arch).
        dataset: Data set, for the heading.
        arch: Architecture, for the heading.
        notes: Extra lines under the definitions.

    Returns:
        ``{"md", "csv"}``; the CSV has one row per (set, score, method).

    Raises:
        ValueError: If no record has OOD scores.
    """
    frame = ood_frame(records)
    if frame.empty:
        raise ValueError(f"no OOD-set scores for {dataset}/{arch}; enable evaluation.ood_sets")
    metrics = [m for m, *_ in OOD_METRICS]
    table = mean_se(frame, ["set", "score", "method"], metrics)
    sets = list(dict.fromkeys(frame["set"]))
    methods = _order(table["method"])
    header = ["OOD set", "Method"]
    header += [f"{label} {SCORE_LABELS[s]}" for s in SCORE_LABELS for _, label, *_ in OOD_METRICS]
    lines = [
        f"### {dataset} / {arch}: out-of-distribution detection (%)",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---", "---"] + ["---:"] * (len(header) - 2)) + "|",
    ]
    for name in sets:
        for method in methods:
            cells = []
            for score in SCORE_LABELS:
                hit = table[(table["set"] == name) & (table["score"] == score)]
                hit = hit[hit["method"] == method]
                row = hit.iloc[0].to_dict() if len(hit) else {}
                cells += [_cell(row, key, scale, dec) for key, _, scale, dec in OOD_METRICS]
            if all(c == "–" for c in cells):
                continue
            label = METHOD_LABELS.get(method, method)
            lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    sizes = frame.groupby("set", sort=False)["n"].first()
    skipped = {}
    for record in records:
        skipped |= (record.get("sets") or {}).get("skipped", {})
    definitions = [
        "OOD examples are the positives; the in-distribution side is the whole test set. "
        "Scores: predictive **entropy** and **max. prob.** (1 − the top-label probability).",
        "**AUROC**: area under the ROC curve. **AUPR**: average precision, which depends on "
        "the ratio of set sizes. **FPR95**: share of test examples flagged at the threshold "
        "that detects 95 % of the OOD set. Mean ± standard error over seeds.",
        "Set sizes: " + ", ".join(f"{k} {int(v)}" for k, v in sizes.items()) + ". "
        "flipped: test images upside down; inverted: 1 − pixel; uniform_noise / "
        "gaussian_noise: noise images with the test images' pixel statistics (harness.ood_sets).",
        *[f"Skipped **{k}**: {v}." for k, v in sorted(skipped.items())],
        *notes,
    ]
    lines += ["", *[f"- {line}" for line in definitions], ""]
    return {"md": "\n".join(lines), "csv": _csv(table)}
