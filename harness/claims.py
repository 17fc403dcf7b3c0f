"""The paper's claims set against our results: the registry of ``configs/claims.yaml``, rendered.

Every claim names an evaluator (``test.kind``) that reads the aggregated results
(:func:`harness.report.aggregate`), and optionally other evidence (files, and ``"epochs"``: the
per-epoch test scores of :func:`harness.eval_report.aggregate_epochs`), and returns what we
measured and a verdict. The calibration verdicts (C1, C5) are read after the last epoch and
say so, with the trend of the score over the epochs:

- ``reproduced`` / ``not reproduced``: the configuration produced the results the claim is about
  and the registry's criterion holds / fails;
- ``proxy``: the criterion was evaluated, but on results obtained with a setting the claim's
  ``test.reference`` keys require to match the paper's protocol (e.g. MP's ``scaled`` schedule
  where the claim is about the method's uncertainty, which is read at the reference,
  ``sequential``, schedule); the criterion's outcome is shown and never becomes a verdict;
- ``not testable here``: the configuration did not produce them (reason given). Where other
  results bear on the claim (e.g. Fashion-MNIST instead of CIFAR-10) they are shown as a proxy,
  marked as such, and never turn into a verdict.

Protocol differences are computed by comparing the registry's ``protocol`` with the settings the
configuration actually used; every row names the settings its verdict was read at (schedule,
dtype, epochs, data size).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from amp.schedules import Schedule
from harness.data import ood_normalization_of
from harness.jobs import experiment_epochs

__all__ = [
    "EVALUATORS",
    "Finding",
    "claims_header",
    "evaluate_claims",
    "protocol_differences",
    "read_at",
    "render_claims",
    "run_settings",
]

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
NOT_TESTABLE = "not testable here"
PROXY = "proxy"
COVERAGE_SETTING = ("sine", "toy_regression")
"""The (dataset, arch) key of the coverage study's settings in :func:`run_settings`."""
BASELINES = ("adamw", "ivon", "ivon_mean")


@dataclass(frozen=True)
class Finding:
    """What our results say about one claim.

    Attributes:
        ours: Our value(s), as text.
        verdict: ``reproduced``, ``not reproduced`` or ``not testable here`` (``proxy`` is
            set by :func:`evaluate_claims`).
        reason: Why (the criterion and the numbers, or why it could not be tested).
        where: ``(dataset, arch)`` the finding is based on, if any.
    """

    ours: str
    verdict: str
    reason: str
    where: tuple[str, str] | None = None


def _value(summary: pd.DataFrame, dataset: str, arch: str, method: str, key: str) -> float:
    rows = summary[
        (summary["dataset"] == dataset) & (summary["arch"] == arch) & (summary["method"] == method)
    ]
    column = f"{key}_mean"
    if rows.empty or column not in rows:
        return math.nan
    return float(rows[column].iloc[0])


def _pairs(summary: pd.DataFrame, methods: tuple[str, ...]) -> list[tuple[str, str]]:
    """(dataset, arch) pairs that have every method of ``methods``."""
    out = []
    for (dataset, arch), rows in summary.groupby(["dataset", "arch"], sort=True):
        if set(methods) <= set(rows["method"]):
            out.append((str(dataset), str(arch)))
    return out


def _pick(
    summary: pd.DataFrame, test: Mapping[str, Any], methods: tuple[str, ...]
) -> tuple[tuple[str, str] | None, bool]:
    """The (dataset, arch) the claim is about if present, else a proxy; and whether exact."""
    pairs = _pairs(summary, methods)
    wanted_arch = test.get("arch")
    exact = [p for p in pairs if p[1] == wanted_arch and (test.get("dataset") in (None, p[0]))]
    if exact:
        return exact[0], True
    return (pairs[0] if pairs else None), False


def _epoch_series(
    epochs: pd.DataFrame | None, where: tuple[str, str], method: str, metric: str
) -> list[tuple[int, float]]:
    """``(epoch, mean over seeds)`` of a per-epoch test score, in epoch order."""
    if epochs is None or epochs.empty or f"{metric}_mean" not in epochs:
        return []
    rows = epochs[
        (epochs["dataset"] == where[0])
        & (epochs["arch"] == where[1])
        & (epochs["method"] == method)
    ].sort_values("epoch")
    return [
        (int(e), float(v))
        for e, v in zip(rows["epoch"], rows[f"{metric}_mean"], strict=True)
        if math.isfinite(v)
    ]


def _trend(series: list[tuple[int, float]], fmt: str) -> str:
    """E.g. ``"epochs 1–4: 0.08, 0.06, 0.05, 0.04 (falling)"``; empty without two epochs."""
    if len(series) < 2:
        return ""
    steps = [b - a for (_, a), (_, b) in zip(series, series[1:], strict=False)]
    if all(s <= 0 for s in steps):
        shape = "falling"
    elif all(s >= 0 for s in steps):
        shape = "rising"
    else:
        low = min(series, key=lambda item: item[1])
        shape = f"not monotone, lowest at epoch {low[0]}"
    values = ", ".join(format(v, fmt) for _, v in series)
    return f"epochs {series[0][0]}–{series[-1][0]}: {values} ({shape})"


def _read_at(epochs: pd.DataFrame | None, where: tuple[str, str]) -> str:
    """Which epoch the final scores belong to, e.g. ``"after epoch 4 (the last)"``."""
    if epochs is None or epochs.empty:
        return "after the last epoch"
    rows = epochs[(epochs["dataset"] == where[0]) & (epochs["arch"] == where[1])]
    return f"after epoch {int(rows['epoch'].max())} (the last)" if len(rows) else "at the end"


def _calibration(
    summary: pd.DataFrame, test: Mapping[str, Any], evidence: Mapping[str, Any]
) -> Finding:
    where, exact = _pick(summary, test, ("mp",))
    baselines = [
        m
        for m in ("adamw", "ivon")
        if where and math.isfinite(_value(summary, *where, m, "accuracy"))
    ]
    if where is None or not baselines:
        return Finding("–", NOT_TESTABLE, test.get("reason", "no MP and baseline results"))
    ece = {m: _value(summary, *where, m, "ece_mv") for m in ("mp", *baselines)}
    acc = {m: _value(summary, *where, m, "accuracy") for m in ("mp", *baselines)}
    epochs = evidence.get("epochs")
    ours = f"{_read_at(epochs, where)}: " + "; ".join(
        f"{m}: ECE-paper {ece[m]:.4f}, acc. {acc[m]:.2%}" for m in ece
    )
    trends = {m: _trend(_epoch_series(epochs, where, m, "ece_mv"), ".4f") for m in ece}
    if any(trends.values()):
        ours += "; ECE-paper over " + "; ".join(f"{m} {v}" for m, v in trends.items() if v)
    margin = float(test.get("accuracy_margin", 0.02))
    better = all(ece["mp"] < ece[m] for m in baselines)
    competitive = acc["mp"] >= max(acc[m] for m in baselines) - margin
    criterion = (
        f"MP's ECE-paper below every baseline's: {better}; MP accuracy within "
        f"{margin:.0%} of the best baseline: {competitive}"
    )
    return _finish(ours, better and competitive, criterion, where, exact, test)


def _scaling(summary: pd.DataFrame, test: Mapping[str, Any], _: Mapping[str, Any]) -> Finding:
    where, exact = _pick(summary, test, ("mp",))
    if where is None:
        return Finding("–", NOT_TESTABLE, test.get("reason", "no MP results"))
    acc = _value(summary, *where, "mp", "accuracy")
    params = _value(summary, *where, "mp", "parameters")
    best = max(
        (_value(summary, *where, m, "accuracy") for m in ("adamw", "ivon")),
        default=math.nan,
        key=lambda v: -math.inf if math.isnan(v) else v,
    )
    margin = float(test.get("accuracy_margin", 0.02))
    ok = math.isfinite(acc) and (math.isnan(best) or acc >= best - margin)
    size = f"MP on {int(params):,} parameters" if math.isfinite(params) else "MP"
    ours = f"{size}: accuracy {acc:.2%}" + (
        f" (best baseline {best:.2%})" if math.isfinite(best) else ""
    )
    criterion = f"trains to a finite result within {margin:.0%} of the best baseline: {ok}"
    return _finish(ours, ok, criterion, where, exact, test)


def _speed(summary: pd.DataFrame, test: Mapping[str, Any], _: Mapping[str, Any]) -> Finding:
    where, exact = _pick(summary, test, ("mp", "ivon"))
    if where is None:
        return Finding("–", NOT_TESTABLE, "needs MP and IVON runs on the same data")
    mp = _value(summary, *where, "mp", "seconds_per_epoch")
    ivon = _value(summary, *where, "ivon", "seconds_per_epoch")
    ratio = mp / ivon if ivon > 0 else math.nan
    low, high = test.get("ratio_range", [30, 300])
    ok = low <= ratio <= high
    ours = f"MP {mp:.3g} s/epoch vs IVON {ivon:.3g} s/epoch: {ratio:.0f}× slower"
    adamw = _value(summary, *where, "adamw", "seconds_per_epoch")
    if adamw > 0:  # the same run's AdamW, for scale (NaN when it did not run)
        ours += f"; vs AdamW {adamw:.3g} s/epoch: {mp / adamw:.0f}× slower"
    criterion = f"ratio in [{low}, {high}] (about two orders of magnitude): {ok}"
    return _finish(ours, ok, criterion, where, exact or not test.get("arch"), test)


def _overconfidence(
    summary: pd.DataFrame, test: Mapping[str, Any], evidence: Mapping[str, Any]
) -> Finding:
    rows = summary[summary["method"] == "mp"]
    if rows.empty or "overconfidence_mean" not in rows:
        return Finding("–", NOT_TESTABLE, "no MP classification results")
    limit = float(test.get("max_overconfidence", 0.02))
    epochs = evidence.get("epochs")
    parts, ok = [], True
    for _, row in rows.iterrows():
        where = (row["dataset"], row["arch"])
        gap = float(row["overconfidence_mean"])
        ok &= gap <= limit
        text = f"{where[0]}/{where[1]}: confidence − accuracy {gap:+.3f} {_read_at(epochs, where)}"
        trend = _trend(_epoch_series(epochs, where, "mp", "overconfidence"), "+.3f")
        parts.append(text + (f"; {trend}" if trend else ""))
    criterion = f"mean confidence exceeds accuracy by at most {limit} at the last epoch: {ok}"
    first = (str(rows["dataset"].iloc[0]), str(rows["arch"].iloc[0]))
    return Finding("; ".join(parts), REPRODUCED if ok else NOT_REPRODUCED, criterion, first)


def _coverage(_: pd.DataFrame, test: Mapping[str, Any], evidence: Mapping[str, Any]) -> Finding:
    study = evidence.get("coverage")
    if not study:
        return Finding("–", NOT_TESTABLE, test.get("reason", "the coverage study was not run"))
    corr = float(study["correlation"])
    floor = float(test.get("min_correlation", 0.8))
    ok = corr >= floor
    criterion = f"correlation ≥ {floor}: {ok}"
    ours = f"correlation {corr:.3f}"
    medians = study.get("median_coverage", {})
    if medians:
        ours += "; median coverage " + "; ".join(
            f"{region}: " + "/".join(f"{v:.0%}" for v in values)
            for region, values in medians.items()
        )
    paper = test.get("paper_medians")
    if paper and medians:
        # the medians must come within `median_tolerance` of the paper's at every band
        tolerance = float(test.get("median_tolerance", 0.1))
        short = max(
            p - v
            for region, ref in paper.items()
            for p, v in zip(ref, medians[region], strict=True)
        )
        close = short <= tolerance
        criterion += (
            f"; every median coverage at most {tolerance:.0%} below the paper's: {close} "
            f"(largest shortfall {short:.0%})"
        )
        ok = ok and close
    return Finding(ours, REPRODUCED if ok else NOT_REPRODUCED, criterion, COVERAGE_SETTING)


def _finish(
    ours: str,
    ok: bool,
    criterion: str,
    where: tuple[str, str],
    exact: bool,
    test: Mapping[str, Any],
) -> Finding:
    if exact:
        return Finding(ours, REPRODUCED if ok else NOT_REPRODUCED, criterion, where)
    reason = test.get("reason", "the configuration has no results for the claim's setting")
    proxy = f"proxy {where[0]}/{where[1]}: {ours}"
    return Finding(proxy, NOT_TESTABLE, f"{reason} (proxy criterion: {criterion})", where)


EVALUATORS: dict[str, Callable[[pd.DataFrame, Mapping[str, Any], Mapping[str, Any]], Finding]] = {
    "calibration": _calibration,
    "coverage": _coverage,
    "scaling": _scaling,
    "speed": _speed,
    "overconfidence": _overconfidence,
}
"""Evaluator per ``test.kind`` of the registry. ``coverage`` reads the evidence entry
``coverage``: ``{"correlation": float, "median_coverage": {region: [1σ, 2σ, 3σ]}}``."""


def protocol_differences(protocol: Mapping[str, Any], used: Mapping[str, Any]) -> list[str]:
    """Settings where our run differs from the claim's protocol (``key: paper → ours``)."""
    out = []
    for key, paper in protocol.items():
        ours = used.get(key, "not run")
        if ours != paper:
            out.append(f"{key}: {paper} → {ours}")
    return out


def evaluate_claims(
    registry: Mapping[str, Any],
    summary: pd.DataFrame,
    settings: Mapping[tuple[str, str], Mapping[str, Any]],
    evidence: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Evaluate every claim of the registry.

    Args:
        registry: The parsed ``configs/claims.yaml`` (``{"claims": [...]}``).
        summary: Aggregated results.
        settings: Per (dataset, arch) the settings our runs used (keys as in the claims'
            ``protocol``: dataset, arch, epochs, batch_size, mp_dtype, ...).
        evidence: Other results by name (e.g. ``{"coverage": {...}}``).

    Returns:
        One dict per claim with the registry's fields plus ``ours``, ``verdict``, ``reason`` and
        ``differences``.

    Raises:
        ValueError: On an unknown ``test.kind``.
    """
    rows = []
    for claim in registry["claims"]:
        test = claim.get("test", {})
        kind = test.get("kind")
        if kind not in EVALUATORS:
            raise ValueError(
                f"claim {claim.get('id')}: unknown test kind {kind!r}; known: {sorted(EVALUATORS)}"
            )
        finding = EVALUATORS[kind](summary, test, evidence or {})
        used = settings.get(finding.where, {}) if finding.where else {}
        protocol = claim.get("protocol", {})
        differences = protocol_differences(protocol, used) if used else []
        verdict, reason = finding.verdict, finding.reason
        off = [k for k in test.get("reference", []) if k in protocol and used.get(k) != protocol[k]]
        if verdict in (REPRODUCED, NOT_REPRODUCED) and used and off:
            setting = ", ".join(f"{k} {used.get(k, 'not run')} (paper: {protocol[k]})" for k in off)
            reason = f"read at {setting}; criterion there ({verdict}): {reason}"
            verdict = PROXY
        rows.append(
            {
                **claim,
                "ours": finding.ours,
                "verdict": verdict,
                "reason": reason,
                "differences": differences,
                "read_at": read_at(used),
            }
        )
    return rows


def read_at(used: Mapping[str, Any]) -> str:
    """The settings a verdict was read at, e.g. ``"MP scaled, float32; 2 epochs; 20000 ..."``."""
    if not used:
        return "–"
    mp = f"MP {used.get('mp_schedule', '?')}, {used.get('mp_dtype', '?')}"
    if "networks" in used:  # the coverage study
        return f"{mp}; {used['networks']} networks × {used['iterations']} sweeps"
    seeds = used.get("seeds", 1)
    return (
        f"{mp}; {used.get('epochs', '?')} epochs; {used.get('train_subset', '?')} training "
        f"examples; {seeds} seed{'s' if seeds != 1 else ''}"
    )


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_claims(rows: list[dict[str, Any]], header: str = "") -> str:
    """Markdown table of the evaluated claims, with sources and criteria below it."""
    lines = [
        "# The paper's claims against our results",
        "",
        header,
        "",
        "| Claim | Paper value | Ours | Read at | Protocol differences | Verdict |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        diffs = "; ".join(row["differences"]) if row["differences"] else "–"
        verdict = f"**{row['verdict']}**: {row['reason']}"
        lines.append(
            f"| {row['id']}: {_md(row['claim'])} | {_md(row['paper_value'])} | {_md(row['ours'])} "
            f"| {_md(row.get('read_at', '–'))} | {_md(diffs)} | {_md(verdict)} |"
        )
    lines += ["", "Sources:", ""]
    lines += [f"- {row['id']}: {row['source']}" for row in rows]
    return "\n".join(lines) + "\n"


def _subset_text(size: int | None) -> str:
    return "full" if size is None else str(size)


def run_settings(config: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Settings of every (dataset, arch) of a pipeline configuration, in the claims' vocabulary.

    Returns:
        Per ``(dataset, arch)``: ``dataset``, ``arch``, ``epochs``, ``batch_size``,
        ``train_subset``, ``seeds``, ``device``, ``mp_dtype``, ``mp_schedule``, ``ood`` and
        ``mp_ood_normalization``; for the coverage study (key :data:`COVERAGE_SETTING`, where
        the configuration has one) ``networks``, ``iterations``, ``mp_dtype`` and
        ``mp_schedule``.
    """
    out = {}
    mp = config.get("methods", {}).get("mp", {})
    coverage = config.get("coverage")
    if coverage:
        out[COVERAGE_SETTING] = {
            "dataset": COVERAGE_SETTING[0],
            "arch": COVERAGE_SETTING[1],
            "networks": coverage.get("networks", 100),
            "iterations": coverage.get("iterations", 500),
            "mp_dtype": coverage.get("dtype", "float64"),
            "mp_schedule": coverage.get("schedule", Schedule.SCALED.value),
        }
    for dataset, experiment in config["experiments"].items():
        ood = experiment.get("ood") or {}
        for arch in experiment["archs"]:
            out[(dataset, arch)] = {
                "dataset": dataset,
                "arch": arch,
                "epochs": experiment_epochs(config, dataset),
                "batch_size": config["training"].get("batch_size", 128),
                "train_subset": _subset_text(experiment.get("subset")),
                "seeds": len(experiment["seeds"]),
                "device": config.get("device", "cpu"),
                "mp_dtype": mp.get("dtype", "float64"),
                "mp_schedule": mp.get("schedule", Schedule.SCALED.value),
                "ood": ood.get("name", "none"),
                "mp_ood_normalization": ood_normalization_of(ood, "mp"),
            }
    return out


def claims_header(config: dict[str, Any]) -> str:
    """The paragraph above the claims table: which configuration produced the results."""
    title = config.get("report", {}).get("title") or "this configuration"
    return (
        f"Results of the {title} configuration. Verdicts: *reproduced* / *not reproduced* when "
        "the configuration produced the results a claim is about; *proxy* when it produced them "
        "with a setting the claim must be read at the paper's value (MP's uncertainty is read at "
        "the reference, sequential, schedule), with the criterion's outcome there; otherwise "
        "*not testable here*, with the reason, and the nearest results we have shown as a proxy. "
        "*Read at* names the settings of each verdict."
    )
