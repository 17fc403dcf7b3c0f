"""The Snakemake workflow: lint, dry runs of every configuration, config validation, a CI run."""

import re
import shutil
import subprocess
import sys

import pytest
import yaml
from pipeline_harness import REPO, copy_workflow, fashion_mnist_available
from pipeline_harness import run_snakemake as snakemake

CONFIGS = ["default", "ci", "paper"]


def job_counts(output):
    """Rule -> job count from the 'Job stats' table of a dry run."""
    table = output.split("Job stats:")[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def expected_training_jobs(config):
    counts = {"train_mp": 0, "train_baseline": 0, "evaluate_run": 0}
    for experiment in config["experiments"].values():
        runs = len(experiment["archs"]) * len(experiment["seeds"])
        for method in experiment["methods"]:
            counts["train_mp" if method == "mp" else "train_baseline"] += runs
            counts["evaluate_run"] += runs * (2 if method == "ivon" else 1)
    return counts


def test_lint_is_clean():
    result = snakemake("--lint", "--configfile", "configs/ci.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_makefile_pipeline_commands_parse():
    """Every Snakemake command of `make all` and `make ci-pipeline` works as a dry run.

    (``--configfile`` takes several files: a target written after it is read as a file.)
    """
    printed = subprocess.run(
        ["make", "-n", "--no-print-directory", "all", "ci-pipeline"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    commands = [line for line in printed.splitlines() if "-m snakemake" in line]
    runs = [c for c in commands if "--report" not in c]
    assert len(runs) == 2, commands
    for command in runs:
        args = command.split("-m snakemake", 1)[1].split()
        result = snakemake(*args, "--dry-run")
        assert result.returncode == 0, f"{command}\n{result.stderr[-2000:]}"


@pytest.mark.parametrize("name", CONFIGS)
def test_dry_run(name):
    """Every configuration builds its DAG without data (paper.yaml needs CIFAR-10 and a GPU)."""
    path = f"configs/{name}.yaml"
    result = snakemake("-n", "--forceall", "--configfile", path, "--cores", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_counts(result.stdout)
    config = yaml.safe_load((REPO / path).read_text())
    for rule, count in expected_training_jobs(config).items():
        assert counts.get(rule, 0) == count, (rule, counts)
    tables = sum(len(e["archs"]) for e in config["experiments"].values())
    assert counts["make_table"] == counts["plot_reliability"] == tables
    assert counts["render_claims"] == counts["aggregate_metrics"] == 1
    # every configuration evaluates beyond the final snapshot: curves, selective, shift, OOD
    assert counts["predict_sets"] == counts["evaluate_run"]
    for rule in ("plot_calibration_curves", "summarize_selective", "summarize_shift"):
        assert counts[rule] == tables, rule
    assert counts["summarize_ood"] == tables


def test_extra_sets_can_be_switched_off(tmp_path):
    def edit(config):
        config["evaluation"] = {
            "selective": False,
            "rotations": [],
            "corruptions": [],
            "ood_sets": [],
        }
        config["training"]["evaluate_every_epoch"] = False

    path = write_config(tmp_path, edit)
    result = snakemake("-n", "--forceall", "--configfile", str(path), "--cores", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_counts(result.stdout)
    for rule in (
        "predict_sets",
        "plot_calibration_curves",
        "summarize_selective",
        "summarize_shift",
        "summarize_ood",
    ):
        assert rule not in counts, rule
    assert counts["evaluate_run"] == 4


@pytest.mark.parametrize(("name", "gpus"), [("paper", 1), ("ci", 0)])
def test_training_jobs_request_gpus_on_cuda_only(name, gpus):
    result = snakemake("-n", "--forceall", "--configfile", f"configs/{name}.yaml", "--cores", "8")
    assert result.returncode == 0, result.stderr
    blocks = re.findall(r"^rule (train_\w+):\n(.*?)(?=^\S)", result.stdout, re.M | re.S)
    rules = {"train_mp", "train_baseline", "train_coverage"}
    assert {rule for rule, _ in blocks} == rules
    for rule, block in blocks:
        # The coverage study trains tiny regression networks: they stay on the CPU.
        expected = 0 if rule == "train_coverage" else gpus
        assert f"gpu={expected}" in block


def write_config(tmp_path, edit):
    config = yaml.safe_load((REPO / "configs" / "ci.yaml").read_text())
    edit(config)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["training"].update(epohcs=3), "training.epohcs: unknown key 'epohcs'"),
        (lambda c: c["methods"]["mp"].update(dtyp="float32"), "methods.mp.dtyp: unknown key"),
        (lambda c: c.update(seeds=[0]), "seeds: unknown key 'seeds'"),
        (
            lambda c: c["training"].update(epochs="two"),
            "training.epochs: 'two' is not of type 'integer'",
        ),
        (
            lambda c: c["experiments"]["fashion_mnist"].update(methods=["mp", "sgd"]),
            "experiments.fashion_mnist.methods.1: 'sgd' is not one of",
        ),
    ],
    ids=["misspelt-nested-key", "misspelt-method-key", "unknown-top-level", "wrong-type", "enum"],
)
def test_bad_configuration_is_rejected_naming_the_key(tmp_path, edit, message):
    path = write_config(tmp_path, edit)
    result = snakemake("-n", "--configfile", str(path))
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


@pytest.mark.slow
def test_ci_configuration_end_to_end(tmp_path):
    """configs/ci.yaml in a copy of the workflow: tables, figures, claims, report, gate."""
    if not fashion_mnist_available():
        pytest.skip("Fashion-MNIST is not installed (make data)")
    work = copy_workflow(tmp_path)
    result = snakemake("--cores", "2", "--configfile", "configs/ci.yaml", cwd=work, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    reports = work / "results" / "ci" / "reports"
    table = (reports / "fashion_mnist" / "mlp" / "table.md").read_text()
    for label in ("AdamW", "IVON@mean", "IVON", "MP"):
        assert f"| {label} |" in table
    for name in ("table.csv", "table.tex", "reliability.png", "learning_curves.png"):
        assert (reports / "fashion_mnist" / "mlp" / name).stat().st_size > 0
    for name in ("calibration_curves.png", "selective.png", "shift.png"):
        assert (reports / "fashion_mnist" / "mlp" / name).stat().st_size > 10_000
    for name in ("selective.md", "shift.md", "ood.md"):
        text = (reports / "fashion_mnist" / "mlp" / name).read_text()
        for label in ("AdamW", "IVON@mean", "IVON", "MP"):
            assert f"| {label} |" in text, (name, label)
    assert "| flipped |" in (reports / "fashion_mnist" / "mlp" / "ood.md").read_text()
    assert "after epoch 2 (the last)" in (reports / "claims.md").read_text()
    assert "| C5:" in (reports / "claims.md").read_text()

    again = snakemake("-n", "--configfile", "configs/ci.yaml", cwd=work)
    assert "Nothing to be done" in again.stdout + again.stderr

    html = snakemake("--configfile", "configs/ci.yaml", "--report", "report.html", cwd=work)
    assert html.returncode == 0, html.stderr[-3000:]
    assert (work / "report.html").stat().st_size > 10_000

    gate = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.gate",
            "--summary",
            "results/ci/summary.json",
            "--reference",
            "configs/ci_reference.yaml",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
    )
    assert gate.returncode == 0, gate.stdout + gate.stderr
    assert "GATE PASSED" in gate.stdout
