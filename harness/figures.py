"""Figures of the benchmark report, drawn with seaborn on matplotlib's ``Agg`` backend.

- :func:`plot_reliability`: reliability diagrams, one panel per method (top-label confidence in
  equal-width bins against the accuracy in each bin).
- :func:`plot_learning_curves`: test accuracy and NLL after every epoch against cumulative
  training wall-clock (scoring time excluded), one line per method and seed.
- :func:`plot_epoch_seconds`: seconds per training epoch per method (log scale), mean ± SE.

Every function writes one image file and returns its path.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 -- the backend must be chosen first
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from amp.io import atomic_open  # noqa: E402
from harness.report import METHOD_LABELS  # noqa: E402

__all__ = ["plot_epoch_seconds", "plot_learning_curves", "plot_reliability", "reliability_bins"]

DPI = 150
"""Resolution of the saved images."""


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> pd.DataFrame:
    """Top-label confidence and accuracy per equal-width bin (the bins of ECE-15).

    Args:
        probs: Predictive probabilities ``(N, K)``.
        labels: Class indices ``(N,)``.
        n_bins: Number of equal-width bins on ``[0, 1]``; bin ``b`` holds confidences in
            ``(b / n_bins, (b + 1) / n_bins]`` (the first bin also holds 0).

    Returns:
        One row per non-empty bin: ``lower``, ``upper``, ``confidence`` (mean), ``accuracy``,
        ``count``.

    Raises:
        ValueError: If the shapes do not match or ``n_bins < 1``.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if probs.ndim != 2 or labels.shape != (len(probs),):
        raise ValueError(f"invalid probs/labels: shapes {probs.shape} and {labels.shape}")
    if n_bins < 1:
        raise ValueError(f"invalid n_bins: {n_bins!r} (must be >= 1)")
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    index = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        mask = index == b
        if mask.any():
            rows.append(
                {
                    "lower": b / n_bins,
                    "upper": (b + 1) / n_bins,
                    "confidence": float(confidence[mask].mean()),
                    "accuracy": float(correct[mask].mean()),
                    "count": int(mask.sum()),
                }
            )
    return pd.DataFrame(rows, columns=["lower", "upper", "confidence", "accuracy", "count"])


def _label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def _order(methods: Sequence[str]) -> list[str]:
    known = [m for m in METHOD_LABELS if m in methods]
    return known + sorted(m for m in methods if m not in METHOD_LABELS)


def _save(fig: plt.Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, dpi=DPI, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def plot_reliability(
    predictions: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: str | os.PathLike,
    *,
    n_bins: int = 15,
    title: str = "",
) -> Path:
    """Reliability diagrams, one panel per method.

    Args:
        predictions: Method name to ``(probs (N, K), labels (N,))``.
        path: Image file to write.
        n_bins: Equal-width bins.
        title: Figure title.

    Returns:
        The path written.
    """
    methods = _order(list(predictions))
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(1, len(methods), figsize=(2.6 * len(methods), 2.9), squeeze=False)
    for ax, method in zip(axes[0], methods, strict=True):
        probs, labels = predictions[method]
        bins = reliability_bins(probs, labels, n_bins)
        width = 1.0 / n_bins
        ax.bar(
            bins["lower"],
            bins["accuracy"],
            width=width,
            align="edge",
            alpha=0.8,
            edgecolor="white",
            label="accuracy",
        )
        ax.bar(  # the gap to the mean confidence, above or below the accuracy
            bins["lower"],
            (bins["confidence"] - bins["accuracy"]).abs(),
            bottom=np.minimum(bins["confidence"], bins["accuracy"]),
            width=width,
            align="edge",
            fill=False,
            edgecolor="tab:red",
            hatch="///",
            linewidth=0.6,
            label="gap to confidence",
        )
        share = bins["count"] / bins["count"].sum()
        ax.step(  # how many test examples fall in each bin
            np.append(bins["lower"], bins["upper"].iloc[-1]),
            np.append(share, share.iloc[-1]),
            where="post",
            color="0.3",
            linewidth=0.8,
            label="share of examples",
        )
        ax.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=0.8)
        gap = np.abs(bins["confidence"] - bins["accuracy"]) * bins["count"]
        ece = float(gap.sum() / max(int(bins["count"].sum()), 1))
        ax.set(
            xlim=(0, 1),
            ylim=(0, 1),
            xlabel="confidence",
            title=f"{_label(method)}  (ECE-{n_bins} {ece:.3f})",
        )
    axes[0][0].set_ylabel("accuracy")
    axes[0][0].legend(loc="upper left", fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def _history_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    rows = []
    for record in records:
        elapsed = 0.0
        for entry in record.get("history", []):
            elapsed += float(entry["seconds"])
            test = entry.get("test") or {}
            if "accuracy" in test:
                rows.append(
                    {
                        "method": _label(record["method"]),
                        "seed": record["seed"],
                        "epoch": entry["epoch"],
                        "seconds": elapsed,
                        "accuracy": test["accuracy"],
                        "nll": test["nll"],
                    }
                )
    return pd.DataFrame(rows)


def plot_learning_curves(
    records: Sequence[Mapping[str, Any]], path: str | os.PathLike, *, title: str = ""
) -> Path:
    """Test accuracy and NLL after every epoch against cumulative training seconds.

    Args:
        records: ``metrics.json`` contents (:func:`harness.report.run_record`) of the runs; runs
            without per-epoch test scores are skipped. IVON is scored as its model average,
            IVON@mean at its mean weights (both on IVON's training clock).
        path: Image file to write.
        title: Figure title.

    Returns:
        The path written.
    """
    frame = _history_frame(records)
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.0))
    if frame.empty:
        for ax in axes:
            ax.text(0.5, 0.5, "no per-epoch test scores", ha="center", va="center")
    else:
        order = [_label(m) for m in _order([r["method"] for r in records])]
        order = [m for m in order if m in set(frame["method"])]
        for ax, metric, label in (
            (axes[0], "accuracy", "test accuracy"),
            (axes[1], "nll", "test NLL"),
        ):
            sns.lineplot(
                data=frame,
                x="seconds",
                y=metric,
                hue="method",
                hue_order=order,
                units="seed",
                estimator=None,
                marker="o",
                markersize=3,
                ax=ax,
            )
            ax.set(xscale="log", xlabel="training wall-clock (s, log scale)", ylabel=label)
        axes[1].get_legend().remove()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_epoch_seconds(
    records: Sequence[Mapping[str, Any]], path: str | os.PathLike, *, title: str = ""
) -> Path:
    """Seconds per training epoch per method, mean ± standard error over seeds (log scale).

    Args:
        records: ``metrics.json`` contents of the runs; IVON@mean is left out (it is IVON's run).
        path: Image file to write.
        title: Figure title.

    Returns:
        The path written.
    """
    rows = [
        {"method": _label(r["method"]), "seconds": r["timing"]["seconds_per_epoch"]}
        for r in records
        if r["method"] != "ivon_mean"
        and math.isfinite(r["timing"].get("seconds_per_epoch", math.nan))
    ]
    frame = pd.DataFrame(rows, columns=["method", "seconds"])
    sns.set_theme(style="whitegrid", context="paper")
    fig, ax = plt.subplots(figsize=(4.0, 3.0))
    if not frame.empty:
        order = [_label(m) for m in _order([r["method"] for r in records])]
        order = [m for m in order if m in set(frame["method"])]
        sns.barplot(data=frame, x="method", y="seconds", order=order, errorbar="se", ax=ax)
        ax.set_yscale("log")
        for patch, method in zip(ax.patches, order, strict=False):
            mean = frame.loc[frame["method"] == method, "seconds"].mean()
            ax.annotate(
                f"{mean:.3g}",
                (patch.get_x() + patch.get_width() / 2, mean),
                ha="center",
                va="bottom",
                fontsize="small",
            )
    ax.set(xlabel="", ylabel="seconds per epoch (log scale)")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)
