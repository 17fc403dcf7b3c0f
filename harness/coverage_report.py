"""Artefacts, tables and figures of the coverage study (see :mod:`harness.coverage`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from amp import io
from harness.coverage import PAPER, bootstrap, coverage_curves, summarize

__all__ = [
    "TABLE_COLUMNS",
    "load_predictions",
    "markdown_table",
    "plot_study",
    "save_predictions",
    "study_table",
    "write_report",
]


def save_predictions(path: str, study: dict[str, np.ndarray], methods: dict[str, dict]) -> None:
    """Save the study's data, grid and each method's predictive in one ``.npz`` (atomically).

    Args:
        path: Destination file.
        study: ``x_train``, ``y_train``, ``grid`` and ``truth`` arrays.
        methods: ``{name: {"mean": (R, M), "var": (R, M)}}``.
    """
    arrays = {key: np.asarray(study[key]) for key in ("x_train", "y_train", "grid", "truth")}
    for name, predictive in methods.items():
        arrays[f"{name}.mean"] = np.asarray(predictive["mean"])
        arrays[f"{name}.var"] = np.asarray(predictive["var"])
    with io.atomic_open(path, "wb") as handle:
        np.savez(handle, **arrays)


def load_predictions(path: str) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
    """Inverse of :func:`save_predictions`: ``(study arrays, {method: {"mean", "var"}})``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError) as err:
        raise io.CorruptFileError(f"coverage predictions {path} are corrupt: {err}") from err
    study = {key: arrays.pop(key) for key in ("x_train", "y_train", "grid", "truth")}
    methods: dict[str, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        name, field = key.rsplit(".", 1)
        methods.setdefault(name, {})[field] = value
    return study, methods


def study_table(
    results: dict[str, dict[str, dict[str, float]]],
    intervals: dict[str, dict[str, dict[str, tuple[float, float]]]],
) -> pd.DataFrame:
    """One row per (variant, method) with every statistic and its bootstrap interval.

    Args:
        results: ``{variant: {method: summarize(...)}}``.
        intervals: ``{variant: {method: bootstrap(...)}}``.

    Returns:
        A table with columns ``variant``, ``method`` and per statistic ``<stat>``,
        ``<stat>_low``, ``<stat>_high``.
    """
    rows = []
    for variant, methods in results.items():
        for method, stats in methods.items():
            row: dict[str, Any] = {"variant": variant, "method": method}
            for key, value in stats.items():
                low, high = intervals[variant][method].get(key, (math.nan, math.nan))
                row.update({key: value, f"{key}_low": low, f"{key}_high": high})
            rows.append(row)
    return pd.DataFrame(rows)


TABLE_COLUMNS = {
    "correlation": "corr.",
    "neg_1sigma": "x<−10 1σ",
    "neg_2sigma": "x<−10 2σ",
    "neg_3sigma": "x<−10 3σ",
    "pos_1sigma": "x>10 1σ",
    "pos_2sigma": "x>10 2σ",
    "pos_3sigma": "x>10 3σ",
    "inside_2sigma": "inside 2σ",
    "crps_inside": "CRPS inside",
    "crps_pos": "CRPS x>10",
    "width_pos": "2σ-width x>10",
}
"""Columns of the Markdown table and their headers."""


def markdown_table(table: pd.DataFrame) -> str:
    """The study's table in Markdown, each value with its 95 % bootstrap interval."""
    header = ["variant", "method", *TABLE_COLUMNS.values()]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    paper = ["paper (reference code)", "MP"] + [
        f"{PAPER[key]:.3g}" if key in PAPER else "–" for key in TABLE_COLUMNS
    ]
    lines.append("| " + " | ".join(paper) + " |")
    for _, row in table.iterrows():
        cells = [row["variant"], row["method"]]
        for key in TABLE_COLUMNS:
            cells.append(f"{row[key]:.3g} [{row[f'{key}_low']:.3g}, {row[f'{key}_high']:.3g}]")
        lines.append("| " + " | ".join(cells) + " |")
    notes = [
        "",
        "Coverage: fraction of the networks whose central credible interval (1σ: 16–84 %, "
        "2σ: 2.5–97.5 %, 3σ: 0.15–99.85 % of the predictive) contains the noise-free function, "
        "median over the grid points of the region. corr.: Pearson correlation between the "
        "nominal masses 1 %…100 % and the median coverage at x > 10 and x < −10 (both sides "
        "pooled, as the paper). CRPS and the 2σ width are averaged over networks and grid "
        "points. Brackets: 95 % bootstrap intervals over the networks.",
    ]
    return "\n".join(lines + notes) + "\n"


def plot_study(
    path: str, study: dict[str, np.ndarray], methods: dict[str, dict], *, shown: int = 4
) -> None:
    """Predictive bands of a few networks per method, and coverage against nominal mass.

    Args:
        path: PNG file.
        study: Data, grid and truth (see :func:`save_predictions`).
        methods: ``{name: {"mean", "var"}}``.
        shown: Networks whose bands are drawn per method.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(methods)
    fig, axes = plt.subplots(2, len(names), figsize=(4.2 * len(names), 7), squeeze=False)
    grid, truth = study["grid"], study["truth"]
    for col, name in enumerate(names):
        mean, var = methods[name]["mean"], methods[name]["var"]
        ax = axes[0, col]
        for r in range(min(shown, mean.shape[0])):
            std = np.sqrt(var[r])
            ax.fill_between(grid, mean[r] - 2 * std, mean[r] + 2 * std, alpha=0.15)
            ax.plot(grid, mean[r], lw=0.8)
        ax.plot(grid, truth, "k--", lw=1, label="truth")
        x_train = np.asarray(study["x_train"]).reshape(-1)
        y_train = np.asarray(study["y_train"]).reshape(-1)
        ax.scatter(x_train, y_train, s=2, c="k", alpha=0.3)
        ax.set_title(f"{name}: ±2σ bands of {min(shown, mean.shape[0])} networks")
        ax.set_ylim(-15, 15)
        ax.set_xlabel("x")
        curves = coverage_curves(grid, truth, mean, var)
        ax = axes[1, col]
        ax.plot(curves["mass"], curves["mass"], "k:", lw=1, label="ideal")
        ax.plot(curves["mass"], curves["neg"], label="x < −10")
        ax.plot(curves["mass"], curves["pos"], label="x > 10")
        ax.set_xlabel("nominal mass")
        ax.set_ylabel("median coverage")
        ax.legend(fontsize=8)
    fig.tight_layout()
    with io.atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)


def write_report(
    inputs: Mapping[str, list[str]],
    *,
    summary: str,
    table_md: str,
    table_csv: str,
    figures: Mapping[str, str],
    samples: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """Score every method of every variant, with bootstrap intervals, and write the report.

    Args:
        inputs: ``{variant: [prediction files]}`` (files of :func:`save_predictions`).
        summary: JSON file with all statistics; its top level holds the paper-protocol figures
            (MP, initialisation variant) that the claims table reads.
        table_md: Markdown table.
        table_csv: CSV table.
        figures: ``{variant: PNG file}``.
        samples: Bootstrap resamples.
        seed: Seed of the bootstrap.

    Returns:
        The summary written to ``summary``.
    """
    results: dict[str, dict[str, dict[str, float]]] = {}
    intervals: dict[str, dict[str, dict[str, tuple[float, float]]]] = {}
    for variant, files in inputs.items():
        merged: dict[str, dict[str, np.ndarray]] = {}
        study: dict[str, np.ndarray] = {}
        for file in files:
            study, methods = load_predictions(file)
            merged.update(methods)
        x_train = np.asarray(study["x_train"])
        for method, predictive in merged.items():
            args = (study["grid"], study["truth"], predictive["mean"], predictive["var"], x_train)
            results.setdefault(variant, {})[method] = summarize(*args)
            intervals.setdefault(variant, {})[method] = bootstrap(*args, samples=samples, seed=seed)
        if variant in figures:
            plot_study(figures[variant], study, merged)
    table = study_table(results, intervals)
    io.write_text(table_md, markdown_table(table))
    with io.atomic_open(table_csv, "w") as handle:
        table.to_csv(handle, index=False, float_format="%.6g")
    out: dict[str, Any] = {"results": results, "intervals": intervals}
    main = results.get("initialisation", {}).get("mp")
    if main is not None:
        out["correlation"] = main["correlation"]
        out["correlation_interval"] = intervals["initialisation"]["mp"]["correlation"]
        out["median_coverage"] = {
            "x<-10": [main[f"neg_{b}sigma"] for b in (1, 2, 3)],
            "x>10": [main[f"pos_{b}sigma"] for b in (1, 2, 3)],
        }
    io.write_json(summary, _plain(out))
    return out


def _plain(value: Any) -> Any:
    """JSON-safe copy (tuples to lists, NaN to None)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
