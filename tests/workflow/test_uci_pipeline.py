"""The UCI rules: dry runs of configs/uci.yaml, validation of the `uci` section, a tiny run."""

import csv
import json
import re

import pytest
import yaml
from pipeline_harness import REPO, copy_workflow
from pipeline_harness import run_snakemake as snakemake

from harness.data.uci import UCI_ROOT, UCI_SETS


def job_counts(output):
    table = output.split("Job stats:")[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_uci_configuration_runs_every_set_and_method():
    result = snakemake("-n", "--forceall", "all", "--configfile", "configs/uci.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_counts(result.stdout)
    config = yaml.safe_load((REPO / "configs" / "uci.yaml").read_text())["uci"]
    assert set(config["sets"]) == set(UCI_SETS)
    assert all(splits == "all" for splits in config["sets"].values())
    assert counts["prepare_uci"] == 9
    assert counts["train_uci"] == 27
    assert counts["summarize_uci"] == 1
    assert "train_mp" not in counts  # the configuration holds the UCI benchmark only
    assert "reports/uci/table.md" in result.stdout


def test_default_configuration_has_a_small_uci_part():
    result = snakemake("-n", "--forceall", "all", "--configfile", "configs/default.yaml")
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load((REPO / "configs" / "default.yaml").read_text())["uci"]
    counts = job_counts(result.stdout)
    assert counts["train_uci"] == len(config["sets"]) * len(config["methods"])
    assert config["name"] != "uci"  # never overwrites reports/uci of the full benchmark


def write_config(tmp_path, uci, **extra):
    path = tmp_path / "uci_test.yaml"
    path.write_text(yaml.safe_dump({"uci": uci, **extra}))
    return path


@pytest.mark.parametrize(
    ("uci", "message"),
    [
        ({"sets": {"yacht": [0]}, "mp": {"epocs": 2}}, "uci.mp.epocs: unknown key 'epocs'"),
        ({"sets": {"yaht": [0]}}, "uci.sets.yaht: unknown key 'yaht'"),
        ({"sets": {"yacht": "some"}}, "uci.sets.yacht"),
        ({"sets": {"yacht": [0]}, "noise_grid": [0.1, -1]}, "uci.noise_grid.1"),
        ({"sets": {"yacht": [0]}, "mp": {"epochs": {"yacht": 0}}}, "uci.mp.epochs"),
    ],
    ids=["misspelt-setting", "unknown-set", "bad-splits", "negative-noise", "zero-epochs"],
)
def test_bad_uci_configuration_is_rejected_naming_the_key(tmp_path, uci, message):
    result = snakemake("-n", "--configfile", str(write_config(tmp_path, uci)))
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


@pytest.mark.slow
def test_tiny_uci_run_end_to_end(tmp_path):
    """One set, two splits, two epochs, two noise variances, every method: tables and figure."""
    work = copy_workflow(tmp_path)
    uci = {
        "name": "uci_tiny",
        "root": str(UCI_ROOT),
        "sets": {"yacht": [3, 11]},
        "noise_grid": [0.01, 0.3],
        "mp": {"epochs": 2},
        "adamw": {"epochs": 2},
        "ivon": {"epochs": 2, "test_samples": 5},
    }
    config = write_config(work, uci)
    result = snakemake("--cores", "2", "all", "--configfile", str(config), cwd=work, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    reports = work / "reports" / "uci_tiny"
    table = (reports / "table.md").read_text()
    assert "| Yacht | 2/20 |" in table
    assert "LL = −NLL" in table
    rows = list(csv.DictReader((reports / "table.csv").open()))
    ours = {r["column"] for r in rows if r["source"] == "ours"}
    assert ours == {"MP", "AdamW", "IVON"}
    assert (reports / "rmse_ll.png").stat().st_size > 10_000
    assert r"\begin{tabular}" in (reports / "table.tex").read_text()
    runs = json.loads((work / "results" / "uci_tiny" / "yacht" / "mp" / "runs.json").read_text())
    assert [r["split"] for r in runs["records"]] == [3, 11]
    assert all(r["noise_var"] in (0.01, 0.3) for r in runs["records"])
    for rule in ("prepare_uci", "train_uci", "summarize_uci"):
        assert any((work / "logs" / "uci_tiny" / rule).rglob("*.log")) or rule == "summarize_uci"
    assert (work / "logs" / "uci_tiny" / "summarize_uci.log").exists()
    again = snakemake("-n", "all", "--configfile", str(config), cwd=work)
    assert "Nothing to be done" in again.stdout + again.stderr
