"""Figures beyond the final snapshot, drawn with seaborn on matplotlib's ``Agg`` backend.

- :func:`plot_calibration_curves`: accuracy, NLL, ECE-15, the paper's ECE and confidence minus
  accuracy after every epoch, against the epoch (mean ± SE over seeds) and against cumulative
  training wall-clock (one line per seed), every method.
- :func:`plot_selective`: accuracy on the retained test examples as the least confident are
  rejected (0-99 %), every method, mean ± SE over seeds.
- :func:`plot_shift`: accuracy, NLL and ECE-15 against the intensity of every shift.

Every function takes the runs' ``metrics.json`` records (:func:`harness.report.run_record`),
writes one image file and returns its path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 -- the backend must be chosen first
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib import ticker  # noqa: E402

from amp.io import atomic_open  # noqa: E402
from harness.eval_report import epoch_frame, shift_frame  # noqa: E402
from harness.figures import DPI  # noqa: E402
from harness.report import METHOD_LABELS  # noqa: E402
from harness.shift import SHIFT_KINDS  # noqa: E402

__all__ = ["plot_calibration_curves", "plot_selective", "plot_shift"]

CURVE_METRICS = (
    ("accuracy", "test accuracy"),
    ("nll", "test NLL"),
    ("ece_15", "ECE-15"),
    ("ece_mv", "ECE-paper"),
    ("overconfidence", "confidence − accuracy"),
)
SHIFT_PANELS = (("accuracy", "accuracy"), ("nll", "NLL"), ("ece_15", "ECE-15"))


def _labelled(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Methods replaced by their labels, and the labels in the tables' order."""
    present = set(frame["method"])
    order = [m for m in METHOD_LABELS if m in present] + sorted(present - set(METHOD_LABELS))
    labels = [METHOD_LABELS.get(m, m) for m in order]
    return frame.assign(method=frame["method"].map(lambda m: METHOD_LABELS.get(m, m))), labels


def _save(fig: plt.Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, dpi=DPI, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def _empty(ax: plt.Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def plot_calibration_curves(
    records: Sequence[Mapping[str, Any]], path: str | os.PathLike, *, title: str = ""
) -> Path:
    """Per-epoch test scores of every method against epoch and against training wall-clock.

    Args:
        records: ``metrics.json`` contents of the runs of one (dataset, arch); runs without
            per-epoch calibration scores are skipped.
        path: Image file to write.
        title: Figure title.

    Returns:
        The path written.
    """
    frame = epoch_frame(records).dropna(subset=["ece_15"])
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(2, len(CURVE_METRICS), figsize=(3.1 * len(CURVE_METRICS), 5.6))
    if frame.empty:
        for ax in axes.flat:
            _empty(ax, "no per-epoch scores")
        return _save(fig, path)
    frame, order = _labelled(frame)
    for col, (metric, label) in enumerate(CURVE_METRICS):
        top, bottom = axes[0, col], axes[1, col]
        sns.lineplot(
            data=frame, x="epoch", y=metric, hue="method", hue_order=order,
            errorbar="se", marker="o", markersize=4, ax=top,
        )  # fmt: skip
        sns.lineplot(
            data=frame, x="seconds", y=metric, hue="method", hue_order=order,
            units="seed", estimator=None, marker="o", markersize=3, linewidth=0.9, ax=bottom,
        )  # fmt: skip
        top.set(xlabel="epoch", ylabel=label)
        top.xaxis.get_major_locator().set_params(integer=True)
        bottom.set(xscale="log", xlabel="training wall-clock (s, log)", ylabel=label)
        bottom.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        bottom.xaxis.set_minor_formatter(ticker.NullFormatter())
        if metric == "overconfidence":
            for ax in (top, bottom):
                ax.axhline(0.0, color="black", linewidth=0.8, linestyle="--")
        for ax in (top, bottom):
            if (col, ax) != (0, top) and ax.get_legend() is not None:
                ax.get_legend().remove()
    axes[0, 0].legend(title=None, fontsize="small")
    fig.suptitle(
        (title + ": " if title else "") + "test scores after every epoch "
        "(top: mean ± SE over seeds; bottom: each seed)"
    )
    fig.tight_layout()
    return _save(fig, path)


def plot_selective(
    records: Sequence[Mapping[str, Any]], path: str | os.PathLike, *, title: str = ""
) -> Path:
    """Accuracy–rejection curves of every method, mean ± SE over seeds.

    Args:
        records: ``metrics.json`` contents with ``selective`` curves.
        path: Image file to write.
        title: Figure title.

    Returns:
        The path written.
    """
    rows = []
    for record in records:
        curve = record.get("selective")
        if not curve:
            continue
        aurc = record.get("metrics", {}).get("aurc")
        for r, a in zip(curve["rejection"], curve["accuracy"], strict=True):
            rows.append(
                {
                    "method": record["method"],
                    "seed": record["seed"],
                    "rejected": 100 * r,
                    "accuracy": 100 * a,
                    "aurc": aurc,
                }
            )
    frame = pd.DataFrame(rows)
    sns.set_theme(style="whitegrid", context="paper")
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    if frame.empty:
        _empty(ax, "no accuracy–rejection curves")
        return _save(fig, path)
    aurc = frame.groupby("method")["aurc"].mean()
    frame, order = _labelled(frame)
    names = {
        METHOD_LABELS.get(m, m): f"{METHOD_LABELS.get(m, m)} (AURC {v:.4f})"
        for m, v in aurc.items()
    }
    frame["method"] = frame["method"].map(names)
    sns.lineplot(
        data=frame, x="rejected", y="accuracy", hue="method",
        hue_order=[names[m] for m in order], errorbar="se", ax=ax,
    )  # fmt: skip
    ax.set(
        xlabel="rejected: least confident test examples (%)",
        ylabel="accuracy on the rest (%)",
        xlim=(0, 100),
        title=(title + ": " if title else "") + "selective prediction",
    )
    ax.legend(title=None, fontsize="small")
    fig.tight_layout()
    return _save(fig, path)


def plot_shift(
    records: Sequence[Mapping[str, Any]], path: str | os.PathLike, *, title: str = ""
) -> Path:
    """Accuracy, NLL and ECE-15 against shift intensity, one column per shift, every method.

    Args:
        records: ``metrics.json`` contents with ``sets`` scores.
        path: Image file to write.
        title: Figure title.

    Returns:
        The path written.
    """
    frame = shift_frame(records)
    sns.set_theme(style="whitegrid", context="paper")
    if frame.empty:
        fig, ax = plt.subplots(figsize=(4, 3))
        _empty(ax, "no shifted sets")
        return _save(fig, path)
    kinds = [k for k in SHIFT_KINDS if k in set(frame["kind"])]
    kinds += sorted(set(frame["kind"]) - set(kinds))
    frame, order = _labelled(frame)
    fig, axes = plt.subplots(
        len(SHIFT_PANELS), len(kinds), figsize=(3.2 * len(kinds), 7.0), squeeze=False
    )
    for col, kind in enumerate(kinds):
        data = frame[frame["kind"] == kind]
        for row, (metric, label) in enumerate(SHIFT_PANELS):
            ax = axes[row, col]
            sns.lineplot(
                data=data, x="intensity", y=metric, hue="method", hue_order=order,
                errorbar="se", marker="o", markersize=4, ax=ax,
            )  # fmt: skip
            unit = "angle (°)" if kind == "rotation" else "severity"
            ax.set(xlabel=f"{kind}: {unit}" if row == len(SHIFT_PANELS) - 1 else "")
            ax.set(ylabel=label if col == 0 else "")
            if row == 0:
                ax.set_title(kind)
            if (row, col) != (0, 0) and ax.get_legend() is not None:
                ax.get_legend().remove()
    axes[0, 0].legend(title=None, fontsize="small")
    fig.suptitle((title + ": " if title else "") + "under dataset shift (mean ± SE over seeds)")
    fig.tight_layout()
    return _save(fig, path)
