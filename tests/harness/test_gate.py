import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from harness import gate
from harness.report import write_summary

REPO = Path(__file__).resolve().parents[2]


def write_fake_summary(path, rows, tmp_path):
    """A summary.json in the pipeline's format (harness.report.write_summary)."""
    frame = pd.DataFrame(rows)
    write_summary(frame, frame, path, tmp_path / "summary.csv")
    return path


def row(method="mp", n=1, **metrics):
    out = {"dataset": "fashion_mnist", "arch": "mlp", "method": method, "n_seeds": n}
    for key, (mean, se) in metrics.items():
        out[f"{key}_mean"], out[f"{key}_se"] = mean, se
    return out


@pytest.mark.parametrize(
    ("direction", "actual", "status"),
    [
        ("higher", 0.80, "ok"),
        ("higher", 0.78, "ok"),  # exactly at the tolerance
        ("higher", 0.77, "REGRESSED"),
        ("higher", 0.83, "improved"),
        ("lower", 0.80, "ok"),
        ("lower", 0.83, "REGRESSED"),
        ("lower", 0.77, "improved"),
        ("lower", math.nan, "MISSING"),
    ],
)
def test_check_status_depends_on_direction(direction, actual, status):
    result = gate.Check("r", "m", direction, 0.80, 0.02 + 1e-12, actual)
    assert result.status == status
    assert result.failed == (status in ("REGRESSED", "MISSING"))


@pytest.mark.parametrize(
    ("actual", "status"),
    [
        (0.8005, "ok"),
        (0.7995, "ok"),
        (0.8020, "DRIFTED"),  # better beyond the drift tolerance: the computation changed
        (0.7980, "DRIFTED"),  # worse, but within the regression tolerance
        (0.7700, "REGRESSED"),
    ],
)
def test_drift_check_of_a_reproducible_run_is_two_sided(actual, status):
    result = gate.Check("r", "accuracy", "higher", 0.80, 0.02, actual, drift=0.001)
    assert result.status == status
    assert result.failed == (status != "ok")
    assert (result.excess > 1) == result.failed


def write_mp_reference(path):
    """Reference: MP accuracy 0.80 ± 0.02 (higher is better), NLL 0.69 ± 0.05 (lower)."""
    runs = {
        "fashion_mnist/mlp/mp": {
            "accuracy": {"value": 0.80, "tolerance": 0.02, "direction": "higher"},
            "nll": {"value": 0.69, "tolerance": 0.05, "direction": "lower"},
        }
    }
    path.write_text(yaml.safe_dump({"runs": runs}))
    return path


def test_gate_fails_on_regression_and_names_the_metric(tmp_path, capsys):
    summary = write_fake_summary(
        tmp_path / "summary.json",
        [row(accuracy=(0.75, None), nll=(0.70, None))],
        tmp_path,
    )
    reference = write_mp_reference(tmp_path / "reference.yaml")
    assert gate.main(["--summary", str(summary), "--reference", str(reference)]) == 1
    out = capsys.readouterr().out
    assert "GATE FAILED" in out
    assert "fashion_mnist/mlp/mp/accuracy" in out.splitlines()[-1]
    assert "nll" not in out.splitlines()[-1]


def test_gate_passes_within_tolerance(tmp_path, capsys):
    summary = write_fake_summary(
        tmp_path / "summary.json", [row(accuracy=(0.79, None), nll=(0.72, None))], tmp_path
    )
    reference = write_mp_reference(tmp_path / "reference.yaml")
    assert gate.main(["--summary", str(summary), "--reference", str(reference)]) == 0
    assert "GATE PASSED: 2 metric(s)" in capsys.readouterr().out


def test_missing_run_fails(tmp_path):
    summary = write_fake_summary(tmp_path / "s.json", [row(accuracy=(0.8, None))], tmp_path)
    reference = {"runs": {"fashion_mnist/mlp/ivon": {"accuracy": {"value": 0.8, "tolerance": 1}}}}
    checks = gate.check(gate.load_summary(summary), reference)
    assert [c.status for c in checks] == ["MISSING"]


def test_update_replaces_values_and_keeps_tolerances(tmp_path):
    summary = gate.load_summary(
        write_fake_summary(
            tmp_path / "s.json", [row(accuracy=(0.7, None), ece_15=(0.05, None))], tmp_path
        )
    )
    old = {"runs": {"fashion_mnist/mlp/mp": {"accuracy": {"value": 0.9, "tolerance": 0.04}}}}
    new = gate.update(summary, old)["runs"]["fashion_mnist/mlp/mp"]
    assert new["accuracy"] == {"value": 0.7, "tolerance": 0.04, "direction": "higher"}
    assert new["ece_15"] == {
        "value": 0.05,
        "tolerance": gate.MIN_TOLERANCE["ece_15"],
        "direction": "lower",
    }


def test_calibrate_sizes_tolerances_from_the_spread_of_variant_runs(tmp_path):
    # reference run: accuracy 0.700, nll 0.8; variants: 2 threads (0.688, 0.8001), float64
    # (0.709, 0.7999) -> accuracy spread 0.012 -> tolerance 2 x 0.012; nll spread 1e-4 -> floor
    def summary(name, accuracy, nll):
        rows = [row(accuracy=(accuracy, None), nll=(nll, None))]
        return gate.load_summary(write_fake_summary(tmp_path / name, rows, tmp_path))

    base = summary("s.json", 0.7, 0.8)
    variants = [summary("t.json", 0.688, 0.8001), summary("f.json", 0.709, 0.7999)]
    runs = gate.calibrate(base, variants, {"note": 1})
    assert runs["note"] == 1
    entries = runs["runs"]["fashion_mnist/mlp/mp"]
    assert entries["accuracy"]["value"] == 0.7
    assert entries["accuracy"]["spread"] == pytest.approx(0.012)
    assert entries["accuracy"]["tolerance"] == pytest.approx(gate.SPREAD_MULTIPLE * 0.012)
    assert entries["nll"]["spread"] == pytest.approx(1e-4)
    assert entries["nll"]["tolerance"] == gate.MIN_TOLERANCE["nll"]
    assert entries["nll"]["direction"] == "lower"


def test_calibrate_gives_only_reproducible_runs_a_drift_tolerance(tmp_path):
    def summary(name, mp_accuracy, adamw_accuracy):
        rows = [row(accuracy=(mp_accuracy, None)), row("adamw", accuracy=(adamw_accuracy, None))]
        return gate.load_summary(write_fake_summary(tmp_path / name, rows, tmp_path))

    base = summary("s.json", 0.7, 0.7)
    variants = [summary("t.json", 0.7 + 1e-7, 0.703), summary("f.json", 0.7, 0.699)]
    runs = gate.calibrate(base, variants)["runs"]
    assert runs["fashion_mnist/mlp/mp"]["accuracy"]["drift"] == gate.DRIFT_TOLERANCE
    assert "drift" not in runs["fashion_mnist/mlp/adamw"]["accuracy"]
    moved = gate.load_summary(
        write_fake_summary(
            tmp_path / "m.json",
            [row(accuracy=(0.7 + 2e-3, None)), row("adamw", accuracy=(0.7 + 2e-3, None))],
            tmp_path,
        )
    )
    failed = [(c.run, c.status) for c in gate.check(moved, {"runs": runs}) if c.failed]
    assert failed == [("fashion_mnist/mlp/mp", "DRIFTED")]
    assert "DRIFTED" in gate.format_checks(gate.check(moved, {"runs": runs}))


def test_calibrate_needs_a_variant_of_the_same_run(tmp_path):
    base = gate.load_summary(
        write_fake_summary(tmp_path / "s.json", [row(accuracy=(0.7, None))], tmp_path)
    )
    other = gate.load_summary(
        write_fake_summary(tmp_path / "o.json", [row("adamw", accuracy=(0.7, None))], tmp_path)
    )
    with pytest.raises(ValueError, match="no variant summary has a run"):
        gate.calibrate(base, [other])


def test_calibrate_on_the_command_line_needs_variants(tmp_path, capsys):
    summary = write_fake_summary(tmp_path / "s.json", [row(accuracy=(0.7, None))], tmp_path)
    with pytest.raises(SystemExit):
        gate.main(["--summary", str(summary), "--reference", "r.yaml", "--calibrate"])
    assert "--calibrate needs --variants" in capsys.readouterr().err


def test_calibrated_reference_passes_its_run_and_fails_a_change_beyond_the_floor(tmp_path):
    summary = write_fake_summary(tmp_path / "s.json", [row(accuracy=(0.7, None))], tmp_path)
    variant = write_fake_summary(tmp_path / "v.json", [row(accuracy=(0.7, None))], tmp_path)
    reference = tmp_path / "ref.yaml"
    args = ["--summary", str(summary), "--reference", str(reference)]
    assert gate.main([*args, "--calibrate", "--variants", str(variant)]) == 0
    assert gate.main(args) == 0
    worse = write_fake_summary(tmp_path / "w.json", [row(accuracy=(0.689, None))], tmp_path)
    assert gate.main(["--summary", str(worse), "--reference", str(reference)]) == 1


def test_update_round_trip_writes_a_reference_that_passes(tmp_path):
    summary = write_fake_summary(
        tmp_path / "s.json", [row(accuracy=(0.7, None)), row("adamw", nll=(0.5, None))], tmp_path
    )
    reference = tmp_path / "ref.yaml"
    args = ["--summary", str(summary), "--reference", str(reference)]
    assert gate.main([*args, "--update"]) == 0
    assert reference.read_text().startswith("# Reference metrics")
    assert gate.main(args) == 0


def test_committed_reference_passes_itself_and_catches_a_worse_metric(tmp_path):
    """The committed CI reference: its own values pass; one metric worse than tolerance fails."""
    reference = yaml.safe_load((REPO / "configs" / "ci_reference.yaml").read_text())
    assert reference["runs"], "configs/ci_reference.yaml lists no runs"
    rows = {}
    for run, entries in reference["runs"].items():
        dataset, arch, method = run.split("/")
        assert set(entries) <= set(gate.DIRECTIONS)
        rows[run] = {"dataset": dataset, "arch": arch, "method": method, "n_seeds": 1}
        for metric, ref in entries.items():
            assert ref["direction"] == gate.DIRECTIONS[metric]
            assert ref["tolerance"] > 0
            rows[run][f"{metric}_mean"] = ref["value"]
    summary_path = write_fake_summary(tmp_path / "s.json", list(rows.values()), tmp_path)
    assert not any(c.failed for c in gate.check(gate.load_summary(summary_path), reference))

    run = next(iter(rows))
    ref = reference["runs"][run]["accuracy"]
    rows[run]["accuracy_mean"] = ref["value"] - 2 * ref["tolerance"]
    summary_path = write_fake_summary(tmp_path / "s.json", list(rows.values()), tmp_path)
    failed = [c for c in gate.check(gate.load_summary(summary_path), reference) if c.failed]
    assert [(c.run, c.metric) for c in failed] == [(run, "accuracy")]


def test_summary_without_aggregate_is_rejected(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"runs": []}))
    with pytest.raises(ValueError, match="aggregate"):
        gate.load_summary(path)


def test_command_line_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        gate.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--update" in out
    assert "--calibrate" in out


@pytest.mark.slow
def test_module_runs_as_a_program():
    result = subprocess.run(
        [sys.executable, "-m", "harness.gate", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert "python -m harness.gate" in result.stdout
