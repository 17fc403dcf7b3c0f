"""Scores of single runs, their aggregation over seeds, and comparison tables.

Three steps, one per pipeline rule:

1. :func:`run_record`: the ``metrics.json`` of one run: every metric of
   :func:`harness.metrics.classification_metrics` (or the regression metrics), timings from the
   prediction's metadata (training steps only, per epoch, prediction) and from Snakemake's
   ``benchmark:`` file (the whole job, start-up and data loading included), and the per-epoch
   test history for the learning curves.
2. :func:`aggregate`: mean and standard error over seeds per (dataset, arch, method).
3. :func:`render_table`: one table per (dataset, arch) in Markdown, CSV and LaTeX, methods as
   rows, every metric defined under the table.

The standard error is the sample standard deviation over seeds (``ddof=1``) divided by the square
root of the number of seeds; it is left empty for a single seed.

(Over 400 lines: the three steps share the run record's fields and the metric definitions written
under every table; split apart they would import each other.)
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from amp.io import CorruptFileError, write_json, write_text
from harness.eval_sets import SetPredictions, score_sets
from harness.jobs import experiment_epochs
from harness.metrics import accuracy_rejection_curve
from harness.predictions import Predictions

__all__ = [
    "COLUMNS",
    "METHOD_LABELS",
    "Column",
    "aggregate",
    "load_runs",
    "protocol_notes",
    "read_benchmark",
    "read_summary",
    "render_table",
    "run_record",
    "write_summary",
]

METHOD_LABELS = {"adamw": "AdamW", "ivon_mean": "IVON@mean", "ivon": "IVON", "mp": "MP"}
"""Row labels and row order of the tables (the order of the paper's CIFAR-10 table)."""

KEYS = ("dataset", "arch", "method")
"""Columns that identify an aggregated row."""


@dataclass(frozen=True)
class Column:
    """One column of the comparison tables.

    Attributes:
        key: Metric key in the run records.
        label: Column header.
        scale: Factor applied for display (100 for percentages).
        decimals: Decimals shown.
        definition: One-line definition printed under the table.
    """

    key: str
    label: str
    scale: float
    decimals: int
    definition: str


COLUMNS = (
    Column("accuracy", "Acc. (%)", 100, 2, "top-1 accuracy of the predictive's argmax."),
    Column("top5_accuracy", "Top-5 (%)", 100, 2, "true class among the five most probable."),
    Column(
        "nll",
        "NLL",
        1,
        4,
        "mean negative log predictive probability of the true class (nats; the model average "
        "for IVON; probabilities floored at 2.2e-16 as in the reference evaluation).",
    ),
    Column(
        "ece_15",
        "ECE-15",
        1,
        4,
        "expected calibration error, top-label confidence, 15 equal-width bins (Guo et al. 2017).",
    ),
    Column("ece_20", "ECE-20", 1, 4, "as ECE-15 with 20 bins (the IVON papers' convention)."),
    Column(
        "ece_mv",
        "ECE-paper",
        1,
        4,
        "the paper's estimator: median-variance binning of the full probability vectors with at "
        "least 20 per bin, squared Euclidean distance (CalibrationErrors.jl "
        "`ECE(MedianVarianceBinning(20), SqEuclidean())`); not comparable with ECE-15/20.",
    ),
    Column("brier", "Brier", 1, 4, "squared error of the probability vector, summed over classes."),
    Column(
        "ood_auroc",
        "OOD-AUROC (%)",
        100,
        2,
        "area under the ROC curve separating test from out-of-distribution inputs by "
        "predictive entropy.",
    ),
    Column(
        "seconds_per_epoch",
        "s/epoch",
        1,
        2,
        "mean wall-clock seconds of one training epoch (training steps only; per-epoch test "
        "scoring excluded).",
    ),
    Column(
        "train_seconds",
        "Train s",
        1,
        1,
        "wall-clock seconds of all training epochs (IVON@mean shares IVON's training run).",
    ),
    Column("parameters", "Params", 1, 0, "number of weights and biases."),
)
"""Columns of the comparison tables, in order."""


def read_benchmark(path: str | os.PathLike) -> dict[str, float]:
    """Read a Snakemake ``benchmark:`` file (tab-separated, one header line, one row per repeat).

    Args:
        path: The ``.tsv`` file.

    Returns:
        ``{"job_seconds", "max_rss_mb"}`` of the first repeat (NaN where Snakemake left a
        field empty, as it does for jobs shorter than about half a second).
    """
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    if not rows:
        raise ValueError(f"benchmark file {path} has no data row; re-run the rule that writes it")

    def number(key: str) -> float:
        try:
            return float(rows[0].get(key, "nan"))
        except ValueError:
            return math.nan

    return {"job_seconds": number("s"), "max_rss_mb": number("max_rss")}


def run_record(
    predictions: Predictions,
    *,
    dataset: str,
    arch: str,
    method: str,
    seed: int,
    benchmark: dict[str, float] | None = None,
    sets: SetPredictions | None = None,
    ood_name: str | None = None,
) -> dict[str, Any]:
    """The ``metrics.json`` content of one run.

    Args:
        predictions: The run's prediction artifact.
        dataset: Data set name.
        arch: Architecture name.
        method: Method name (``mp``, ``adamw``, ``ivon``, ``ivon_mean``).
        seed: Seed of the run.
        benchmark: Output of :func:`read_benchmark` for the training job, if any.
        sets: The run's predictions on extra evaluation sets (:mod:`harness.eval_sets`).
        ood_name: Name of the experiment's own OOD set (``probs_ood``), for the sets' table.

    Returns:
        ``{"dataset", "arch", "method", "seed", "metrics", "timing", "parameters", "epochs",
        "history", "config"}``, for classification also ``"selective"`` (the
        accuracy–rejection curve: ``rejection`` and ``accuracy`` lists) and, with ``sets``,
        ``"sets"`` (:func:`harness.eval_sets.score_sets`). ``metrics`` are those of
        :func:`harness.metrics.classification_metrics` (among them ``overconfidence``,
        mean confidence minus accuracy) or :func:`harness.metrics.regression_metrics`.
    """
    scores = predictions.metrics()
    meta = predictions.metadata
    history = list(meta.get("history", []))
    epoch_seconds = [float(h["seconds"]) for h in history]
    timing = {
        "train_seconds": float(meta.get("train_seconds", sum(epoch_seconds))),
        "seconds_per_epoch": float(np.mean(epoch_seconds)) if epoch_seconds else math.nan,
        "predict_seconds": float(meta.get("predict_seconds", math.nan)),
        **(benchmark or {}),
    }
    record = {
        "dataset": dataset,
        "arch": arch,
        "method": method,
        "seed": int(seed),
        "metrics": scores,
        "timing": timing,
        "parameters": meta.get("parameters"),
        "epochs": len(history),
        "history": history,
        "config": meta.get("config", {}),
    }
    if predictions.kind == "classification":
        rejection, accuracy = accuracy_rejection_curve(predictions.probs, predictions.labels)
        record["selective"] = {"rejection": rejection.tolist(), "accuracy": accuracy.tolist()}
    if sets is not None:
        extra = (
            {ood_name or "ood": predictions.probs_ood} if predictions.probs_ood is not None else {}
        )
        record["sets"] = score_sets(sets, predictions.probs, extra)
        timing["sets_predict_seconds"] = float(sets.metadata.get("predict_seconds", math.nan))
    return record


def _read_record(path: str | os.PathLike, keys: Sequence[str]) -> dict:
    """A JSON object with at least ``keys``; a damaged file is named with the way to redo it."""
    try:
        record = json.loads(Path(path).read_text())
        missing = [key for key in keys if key not in record]
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as err:
        missing, record = [f"valid JSON ({err})"], None
    if missing:
        raise CorruptFileError(
            f"{path} is damaged or not written by this version (lacks {missing}); delete it "
            "and rerun the pipeline, which recreates it"
        )
    return record


def load_runs(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """One row per run from ``metrics.json`` files: identity, metrics and timings as columns.

    Raises:
        ValueError: If no path is given.
        amp.io.CorruptFileError: If a file is damaged (named in the message).
    """
    rows = []
    for path in paths:
        record = _read_record(path, (*KEYS, "seed", "metrics", "timing"))
        row = {key: record[key] for key in (*KEYS, "seed")}
        row.update(record["metrics"])
        row.update(record["timing"])
        row["parameters"] = record.get("parameters")
        row["epochs"] = record.get("epochs")
        rows.append(row)
    if not rows:
        raise ValueError("no metrics files given; run the evaluation rules first")
    return pd.DataFrame(rows)


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard error over seeds of every numeric column, per (dataset, arch, method).

    Args:
        runs: Output of :func:`load_runs`.

    Returns:
        One row per (dataset, arch, method) with ``n_seeds`` and ``<metric>_mean`` /
        ``<metric>_se`` columns (SE is NaN for a single seed).
    """
    numeric = [c for c in runs.columns if c not in (*KEYS, "seed")]
    values = runs[numeric].apply(pd.to_numeric, errors="coerce")
    grouped = pd.concat([runs[list(KEYS)], values], axis=1).groupby(list(KEYS), sort=True)
    mean = grouped.mean().add_suffix("_mean")
    se = (grouped.std(ddof=1) / np.sqrt(grouped.count())).add_suffix("_se")
    out = pd.concat([grouped.size().rename("n_seeds"), mean, se], axis=1).reset_index()
    return out


def _cell(mean: float, se: float, column: Column, latex: bool) -> str:
    if mean is None or not math.isfinite(mean):
        return "–"
    text = f"{mean * column.scale:,.{column.decimals}f}"
    if column.key == "parameters" or se is None or not math.isfinite(se):
        return text
    err = f"{se * column.scale:.{column.decimals}f}"
    return f"${text} \\pm {err}$".replace(",", "{,}") if latex else f"{text} ± {err}"


def _ordered(rows: pd.DataFrame) -> pd.DataFrame:
    order = {m: i for i, m in enumerate(METHOD_LABELS)}
    return rows.assign(_o=rows["method"].map(lambda m: order.get(m, len(order)))).sort_values(
        ["_o", "method"]
    )


def _latex_escape(text: str) -> str:
    return text.replace("%", r"\%").replace("_", r"\_").replace("&", r"\&")


def render_table(
    summary: pd.DataFrame,
    dataset: str,
    arch: str,
    notes: Sequence[str] = (),
    *,
    columns: Sequence[Column] = COLUMNS,
    name: str = "",
) -> dict[str, str]:
    """Comparison table of the methods on one (dataset, arch).

    Args:
        summary: Output of :func:`aggregate`.
        dataset: Data set to show.
        arch: Architecture to show.
        notes: Extra lines (protocol, configuration keys) printed under the definitions.
        columns: The columns to show (those without values are left out).
        name: What the table shows, for its heading and LaTeX label (e.g. ``"selective"``).

    Returns:
        ``{"md": ..., "csv": ..., "tex": ...}``: Markdown with definitions, CSV with separate
        mean/SE columns, and a LaTeX ``table`` (booktabs) with the definitions as a caption.

    Raises:
        ValueError: If ``summary`` has no row for (dataset, arch).
    """
    rows = summary[(summary["dataset"] == dataset) & (summary["arch"] == arch)]
    if rows.empty:
        raise ValueError(f"no results for dataset {dataset!r} and arch {arch!r} in the summary")
    rows = _ordered(rows)
    columns = [
        c for c in columns if f"{c.key}_mean" in rows and rows[f"{c.key}_mean"].notna().any()
    ]
    seeds = sorted(set(rows["n_seeds"].astype(int)))
    header = ["Method", *[c.label for c in columns]]
    md = [
        f"### {dataset} / {arch}" + (f": {name}" if name else ""),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * len(columns)) + "|",
    ]
    tex_rows = []
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["method", "n_seeds", *[f"{c.key}_{s}" for c in columns for s in ("mean", "se")]]
    )
    for _, row in rows.iterrows():
        label = METHOD_LABELS.get(row["method"], row["method"])
        cells = [_cell(row[f"{c.key}_mean"], row.get(f"{c.key}_se"), c, False) for c in columns]
        md.append("| " + " | ".join([label, *cells]) + " |")
        tex = [_cell(row[f"{c.key}_mean"], row.get(f"{c.key}_se"), c, True) for c in columns]
        tex_rows.append(" & ".join([label, *tex]) + r" \\")
        writer.writerow(
            [
                row["method"],
                int(row["n_seeds"]),
                *[row.get(f"{c.key}_{s}") for c in columns for s in ("mean", "se")],
            ]
        )
    seeds_text = "/".join(str(s) for s in seeds)
    definitions = [
        f"Mean ± standard error over {seeds_text} seed(s) (sample SD / √n; no ± for one seed).",
        *[f"**{c.label}**: {c.definition}" for c in columns],
        *notes,
    ]
    md += ["", *[f"- {line}" for line in definitions], ""]
    caption = " ".join(_latex_escape(line.replace("**", "")) for line in definitions)
    caption = caption.replace("±", r"$\pm$").replace("√", r"$\sqrt{}$")
    spec = "l" + "r" * len(columns)
    tex = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(_latex_escape(h) for h in header) + r" \\",
        r"\midrule",
        *tex_rows,
        r"\bottomrule",
        r"\end{tabular}",
        rf"\caption{{{_latex_escape(dataset)} / {_latex_escape(arch)}. {caption}}}",
        rf"\label{{tab:{dataset}-{arch}{'-' + name if name else ''}}}",
        r"\end{table}",
        "",
    ]
    return {"md": "\n".join(md), "csv": buffer.getvalue(), "tex": "\n".join(tex)}


def _clean(value: Any) -> Any:
    """NaN and numpy scalars to JSON-friendly values."""
    if isinstance(value, float | np.floating):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_summary(
    runs: pd.DataFrame,
    summary: pd.DataFrame,
    json_path: str | os.PathLike,
    csv_path: str | os.PathLike,
    epochs: pd.DataFrame | None = None,
) -> None:
    """Write runs and aggregate as JSON (``{"runs", "aggregate"}``) and the aggregate as CSV.

    ``epochs`` (:func:`harness.eval_report.aggregate_epochs`), if given, is written to the JSON
    as ``"epochs"``: the per-epoch test scores, mean ± SE over seeds.
    """
    frames = [("runs", runs), ("aggregate", summary)]
    if epochs is not None:
        frames.append(("epochs", epochs))
    data = {
        name: [{k: _clean(v) for k, v in row.items()} for row in frame.to_dict("records")]
        for name, frame in frames
    }
    write_json(json_path, data)
    write_text(csv_path, summary.to_csv(index=False, float_format="%.6g"))


def read_summary(path: str | os.PathLike) -> pd.DataFrame:
    """The aggregate written by :func:`write_summary`, as a data frame (missing values NaN).

    Raises:
        amp.io.CorruptFileError: If the file is damaged.
    """
    rows = _read_record(path, ("aggregate",))["aggregate"]
    return pd.DataFrame(rows).apply(
        lambda col: col if col.name in (*KEYS,) else pd.to_numeric(col, errors="coerce")
    )


def _subset_text(size: int | None) -> str:
    return "full" if size is None else str(size)


def protocol_notes(config: dict[str, Any], dataset: str, arch: str) -> list[str]:
    """Lines under a table saying how its rows were produced and how to reproduce one."""
    experiment = config["experiments"][dataset]
    training, methods = config["training"], config.get("methods", {})
    ood = experiment.get("ood")
    paths = config.get("paths", {})
    lines = [
        f"**Data**: {dataset}, training subset {_subset_text(experiment.get('subset'))}, test "
        f"subset {_subset_text(experiment.get('test_subset'))} (subset seed "
        f"{experiment.get('subset_seed', 0)}); OOD: "
        + (
            f"{ood['name']} (normalisation {ood.get('normalization', 'reference')})"
            if ood
            else "none"
        )
        + ".",
        f"**Training**: {experiment_epochs(config, dataset)} epochs, "
        f"batch {training.get('batch_size', 128)}, "
        f"device {config.get('device', 'cpu')}, seeds {experiment['seeds']}.",
    ]
    for name, section in methods.items():
        if name not in experiment["methods"]:
            continue
        settings = ", ".join(f"{k} {v}" for k, v in section.items() if v is not None)
        lines.append(f"**{METHOD_LABELS.get(name, name)}** (`methods.{name}`): {settings}.")
    results = paths.get("results", "results")
    lines.append(
        "**Reproduce a row**: `snakemake --cores 2 "
        f"{results}/{dataset}/{arch}/<method>/seed<seed>/metrics.json` with the same "
        "configuration; the table itself: "
        f"`snakemake --cores 1 {paths.get('reports', 'reports')}/{dataset}/{arch}/table.md`."
    )
    return lines
