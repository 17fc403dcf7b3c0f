r"""CI metric gate: fail when a benchmark metric regresses beyond its tolerance.

The committed reference file (``configs/ci_reference.yaml``) lists, per run
``<dataset>/<arch>/<method>``, each gated metric with its reference ``value``, its
``tolerance`` and its ``direction`` (``higher`` or ``lower`` is better). A metric regresses
when it is worse than the reference by more than the tolerance:

- ``higher``: ``actual < value - tolerance``;
- ``lower``: ``actual > value + tolerance``.

A metric that is missing or not finite also fails. Improvements never fail the regression check,
but the table marks those beyond the tolerance so that the reference can be refreshed on purpose.

**Drift.** A run whose metrics do not move at all between the variant runs (largest spread at
most :data:`REPRODUCIBLE_SPREAD`: MP, which gives the same numbers for a seed on 1 or 2 threads
and in float32 or float64) is reproducible, and its metrics also carry a two-sided ``drift``
tolerance, :data:`DRIFT_TOLERANCE`: a change beyond it in either direction means the method's
computation changed (``DRIFTED``, fails). It catches faults that change the method without a
meaningful regression of any metric (the EMA damping turned off: below every floor in every
configuration measured); after an intended change, refresh the reference.

Tolerances are sized to what the gate compares: the same configuration, seeds and data, run
again on another machine. For a fixed seed the only variation left is floating-point rounding
(thread counts, library versions, instruction sets); :func:`calibrate` measures it by runs of
the same configuration that change only such a setting (1 vs 2 threads; float32 vs float64
where a method allows it) and sets

    tolerance = max(MIN_TOLERANCE[metric], SPREAD_MULTIPLE x spread),

where ``spread`` is the largest deviation of a variant run from the reference run and
:data:`MIN_TOLERANCE` is the smallest change of each metric that matters (e.g. one point of
accuracy). A seed-to-seed spread would be the wrong yardstick: it is several times larger than a
real fault such as double-counted data (``python -m harness.gate_mutations`` shows that every
injected fault fails the gate).

Usage::

    python -m harness.gate --summary results/ci/summary.json --reference configs/ci_reference.yaml
    # after an intended change of the numbers, refresh the reference values:
    python -m harness.gate --summary results/ci/summary.json \\
        --reference configs/ci_reference.yaml --update
    # values and tolerances from the CI run plus variant runs (README, "metric gate"):
    python -m harness.gate --summary results/ci/summary.json \\
        --reference configs/ci_reference.yaml --calibrate \\
        --variants results/ci-threads2/summary.json results/ci-float64/summary.json

The summary is the ``summary.json`` written by the pipeline's ``aggregate_metrics`` rule.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from amp.io import write_text

__all__ = [
    "DIRECTIONS",
    "DRIFT_TOLERANCE",
    "MIN_TOLERANCE",
    "REPRODUCIBLE_SPREAD",
    "SPREAD_MULTIPLE",
    "Check",
    "calibrate",
    "check",
    "main",
    "update",
]

DIRECTIONS: dict[str, str] = {
    "accuracy": "higher",
    "top5_accuracy": "higher",
    "nll": "lower",
    "brier": "lower",
    "ece_15": "lower",
    "ece_20": "lower",
    "ece_mv": "lower",
    "ood_auroc": "higher",
    "ood_aupr": "higher",
    "ood_fpr95": "lower",
}
"""Gated metrics and which direction is better. Timings are machine-dependent and not gated."""

MIN_TOLERANCE: dict[str, float] = {
    "accuracy": 0.01,  # one point of accuracy
    "top5_accuracy": 0.01,  # one point
    "nll": 0.02,  # about 3 % of the CI runs' NLL (0.6-1.1 nats)
    "brier": 0.01,  # about 3 % of the CI runs' Brier score (0.3-0.5)
    "ece_15": 0.01,  # one point of confidence-accuracy gap
    "ece_20": 0.01,
    "ece_mv": 0.01,
    "ood_auroc": 0.01,  # one point
    "ood_aupr": 0.01,
    "ood_fpr95": 0.02,  # two points: it counts only the OOD inputs above one threshold
}
"""The smallest change of each metric that matters: the floor of every tolerance."""

SPREAD_MULTIPLE = 2.0
"""Tolerance in units of the measured rounding spread: headroom for machines and library versions
beyond the variants measured."""

REPRODUCIBLE_SPREAD = 1e-5
"""Largest spread (any metric) of a run whose metrics get a drift check: rounding alone (MP's
spread across thread counts and dtypes is at most 1e-6 in the CI configuration)."""

DRIFT_TOLERANCE = 1e-3
"""Two-sided tolerance of a reproducible run's metrics: one test example of accuracy in the CI
configuration's 1,000, a hundred times its largest rounding spread."""

HEADER = (
    "# Reference metrics of the CI metric gate (python -m harness.gate).\n"
    "# Per run <dataset>/<arch>/<method>: value, tolerance, direction (higher/lower is better).\n"
    "# tolerance = max(floor, k x spread); spread: largest deviation of the same runs with other\n"
    "# thread counts / dtypes (python -m harness.gate --calibrate); drift: two-sided tolerance of\n"
    "# a reproducible run (spread at most 1e-5); see the README.\n"
)


@dataclass(frozen=True)
class Check:
    """The outcome for one metric of one run."""

    run: str
    metric: str
    direction: str
    value: float
    tolerance: float
    actual: float
    drift: float | None = None
    """Two-sided tolerance of a reproducible run (None: regression check only)."""

    @property
    def delta(self) -> float:
        """``actual - value``."""
        return self.actual - self.value

    @property
    def status(self) -> str:
        """``ok``, ``improved``, ``REGRESSED``, ``DRIFTED`` or ``MISSING``.

        ``improved``: better than value ± tolerance; ``DRIFTED``: moved beyond the drift
        tolerance, either way.
        """
        if not math.isfinite(self.actual):
            return "MISSING"
        worse = -self.delta if self.direction == "higher" else self.delta
        if worse > self.tolerance:
            return "REGRESSED"
        if self.drift is not None and abs(self.delta) > self.drift:
            return "DRIFTED"
        return "improved" if -worse > self.tolerance else "ok"

    @property
    def failed(self) -> bool:
        """Whether this check fails the gate."""
        return self.status in ("REGRESSED", "DRIFTED", "MISSING")

    @property
    def excess(self) -> float:
        """How close it is to failing (above 1: failed).

        The worse change in units of the tolerance, or the change in units of the drift
        tolerance where that is larger.
        """
        worse = -self.delta if self.direction == "higher" else self.delta
        ratio = worse / self.tolerance
        if self.drift:
            ratio = max(ratio, abs(self.delta) / self.drift)
        return ratio


def load_summary(path: str | Path) -> dict[str, dict[str, float]]:
    """Per run ``<dataset>/<arch>/<method>``: ``{metric: mean, metric + "_sd": seed SD}``.

    Raises:
        FileNotFoundError: If the summary does not exist.
        ValueError: If it has no ``aggregate`` list.
    """
    data = json.loads(Path(path).read_text())
    if "aggregate" not in data:
        raise ValueError(f"{path} has no 'aggregate' list; pass the pipeline's summary.json")
    out: dict[str, dict[str, float]] = {}
    for row in data["aggregate"]:
        run = f"{row['dataset']}/{row['arch']}/{row['method']}"
        n = int(row.get("n_seeds") or 1)
        values: dict[str, float] = {}
        for metric in DIRECTIONS:
            mean, se = row.get(f"{metric}_mean"), row.get(f"{metric}_se")
            values[metric] = math.nan if mean is None else float(mean)
            values[f"{metric}_sd"] = math.nan if se is None else float(se) * math.sqrt(n)
        out[run] = values
    return out


def check(summary: Mapping[str, Mapping[str, float]], reference: Mapping[str, Any]) -> list[Check]:
    """Compare a summary with the reference; one :class:`Check` per referenced metric."""
    checks = []
    for run, entries in reference.get("runs", {}).items():
        for metric, ref in entries.items():
            direction = ref.get("direction", DIRECTIONS.get(metric, "higher"))
            if direction not in ("higher", "lower"):
                raise ValueError(f"{run}/{metric}: direction must be 'higher' or 'lower'")
            actual = summary.get(run, {}).get(metric, math.nan)
            drift = ref.get("drift")
            checks.append(
                Check(
                    run,
                    metric,
                    direction,
                    float(ref["value"]),
                    float(ref["tolerance"]),
                    actual,
                    None if drift is None else float(drift),
                )
            )
    return checks


def format_checks(checks: Sequence[Check]) -> str:
    """Plain-text table of the checks, failures named at the end."""
    head = (
        "run", "metric", "better", "reference", "tolerance", "drift", "actual", "delta", "status"
    )  # fmt: skip
    rows = [
        (
            c.run,
            c.metric,
            c.direction,
            f"{c.value:.4f}",
            f"{c.tolerance:.4f}",
            "–" if c.drift is None else f"{c.drift:.4f}",
            f"{c.actual:.4f}",
            f"{c.delta:+.4f}",
            c.status,
        )
        for c in checks
    ]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = [
        "  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)) for r in [head, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    failed = [f"{c.run}/{c.metric}" for c in checks if c.failed]
    if failed:
        lines.append(
            f"\nGATE FAILED: {len(failed)} metric(s) regressed, drifted or missing: "
            + ", ".join(failed)
        )
    else:
        lines.append(f"\nGATE PASSED: {len(checks)} metric(s) within tolerance")
    return "\n".join(lines)


def update(
    summary: Mapping[str, Mapping[str, float]], reference: Mapping[str, Any]
) -> dict[str, Any]:
    """Reference with its values replaced by the summary's (tolerances and directions kept).

    Runs and metrics missing from the reference are added with :data:`DIRECTIONS` and
    :data:`MIN_TOLERANCE`; entries whose run is no longer in the summary are dropped.
    """
    runs: dict[str, Any] = {}
    old = reference.get("runs", {})
    for run, values in sorted(summary.items()):
        entries = {}
        for metric, direction in DIRECTIONS.items():
            if not math.isfinite(values.get(metric, math.nan)):
                continue
            previous = old.get(run, {}).get(metric, {})
            entries[metric] = {
                **previous,
                "value": round(values[metric], 6),
                "tolerance": previous.get("tolerance", MIN_TOLERANCE[metric]),
                "direction": previous.get("direction", direction),
            }
        runs[run] = entries
    return {**reference, "runs": runs}


def calibrate(
    summary: Mapping[str, Mapping[str, float]],
    variants: Sequence[Mapping[str, Mapping[str, float]]],
    reference: Mapping[str, Any] | None = None,
    spread_multiple: float = SPREAD_MULTIPLE,
) -> dict[str, Any]:
    """Reference values from ``summary`` and tolerances from its spread against ``variants``.

    Per run and metric of ``summary``: ``value`` is the summary's, ``spread`` the largest
    ``|variant - value|`` over the variant summaries that have that run (runs of the same
    configuration differing only in thread count or dtype), and ``tolerance``
    ``max(MIN_TOLERANCE[metric], spread_multiple x spread)``. A run whose largest spread is at
    most :data:`REPRODUCIBLE_SPREAD` also gets ``drift``: :data:`DRIFT_TOLERANCE`.

    Args:
        summary: The reference run (:func:`load_summary`), e.g. ``configs/ci.yaml`` as CI runs it.
        variants: Summaries of the variant runs.
        reference: The current reference; its other top-level keys are kept.
        spread_multiple: Tolerance in units of the spread.

    Returns:
        The new reference.

    Raises:
        ValueError: If no variant has a run of the summary.
    """
    runs: dict[str, Any] = {}
    compared = 0
    for run, values in sorted(summary.items()):
        others = [variant[run] for variant in variants if run in variant]
        compared += len(others)
        entries = {}
        for metric, direction in DIRECTIONS.items():
            value = values.get(metric, math.nan)
            if not math.isfinite(value):
                continue
            deviations = [abs(o.get(metric, math.nan) - value) for o in others]
            spread = max((d for d in deviations if math.isfinite(d)), default=0.0)
            tolerance = max(MIN_TOLERANCE[metric], spread_multiple * spread)
            entries[metric] = {
                "value": round(value, 6),
                "tolerance": round(tolerance, 4),
                "spread": round(spread, 6),
                "direction": direction,
            }
        if others and max(e["spread"] for e in entries.values()) <= REPRODUCIBLE_SPREAD:
            for entry in entries.values():
                entry["drift"] = DRIFT_TOLERANCE
        runs[run] = entries
    if compared == 0:
        raise ValueError(
            "no variant summary has a run of the reference summary; pass the summaries of the "
            "same configuration run with 2 threads and in float64 (--variants)"
        )
    return {**(reference or {}), "runs": runs}


def _write(path: Path, reference: Mapping[str, Any]) -> None:
    body = yaml.safe_dump(dict(reference), sort_keys=False, default_flow_style=None, width=100)
    write_text(path, HEADER + body)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (1 when the gate fails)."""
    parser = argparse.ArgumentParser(
        prog="python -m harness.gate",
        description="Compare benchmark metrics with a committed reference; exit 1 on regression.",
    )
    parser.add_argument("--summary", required=True, help="summary.json of aggregate_metrics")
    parser.add_argument(
        "--reference", required=True, help="reference YAML (e.g. configs/ci_reference.yaml)"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--update", action="store_true", help="rewrite reference values from the summary"
    )
    mode.add_argument(
        "--calibrate",
        action="store_true",
        help="rewrite values and tolerances: tolerance = max(floor, k x spread against --variants)",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        default=[],
        metavar="SUMMARY",
        help="with --calibrate: summary.json files of the same configuration run with other "
        "thread counts or dtypes",
    )
    parser.add_argument(
        "--spread-multiple",
        type=float,
        default=SPREAD_MULTIPLE,
        help=f"with --calibrate: tolerance in units of the spread (default {SPREAD_MULTIPLE:g})",
    )
    args = parser.parse_args(argv)
    if args.calibrate and not args.variants:
        parser.error("--calibrate needs --variants (summaries of the variant runs)")
    summary = load_summary(args.summary)
    path = Path(args.reference)
    reference = (yaml.safe_load(path.read_text()) if path.exists() else None) or {}
    if args.update or args.calibrate:
        if args.update:
            reference = update(summary, reference)
        else:
            variants = [load_summary(p) for p in args.variants]
            reference = calibrate(summary, variants, reference, args.spread_multiple)
        _write(path, reference)
        print(f"wrote {path}")  # noqa: T201 -- command-line output
        return 0
    if not path.exists():
        parser.error(f"no reference at {path}; create it with --update")
    checks = check(summary, reference)
    print(format_checks(checks))  # noqa: T201 -- command-line output
    return 1 if any(c.failed for c in checks) or not checks else 0


if __name__ == "__main__":
    sys.exit(main())
