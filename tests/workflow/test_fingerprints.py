"""Results follow code: a source change reruns exactly the training jobs whose code it is."""

import os
import re

import pytest
from pipeline_harness import copy_repository
from pipeline_harness import run_snakemake as snakemake

CONFIG = ("--configfile", "configs/ci.yaml")


def dry_run(work, env):
    result = snakemake("-n", *CONFIG, cwd=work, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def training_jobs(output):
    """(rule, wildcards) of every training job a dry run lists, with its reasons."""
    jobs = {}
    for rule, block in re.findall(r"^rule (train_\w+):\n(.*?)(?=^\S)", output, re.M | re.S):
        wildcards = re.search(r"wildcards: (.*)", block)[1]
        jobs[(rule, wildcards)] = re.search(r"reason: (.*)", block)[1]
    return jobs


@pytest.mark.slow  # six Snakemake runs: about 40 s on an idle machine
def test_a_source_change_reruns_exactly_the_jobs_it_affects(tmp_path):
    work = copy_repository(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(work)}
    # Pretend the whole CI configuration ran: create every output, record it as up to date.
    planned = snakemake("-n", "--forceall", *CONFIG, cwd=work, env=env).stdout
    for line in re.findall(r"^\s+(?:output|benchmark): (.*)$", planned, re.M):
        for path in line.split(", "):
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).touch()
    touched = snakemake("--touch", "--forceall", "--cores", "1", *CONFIG, cwd=work, env=env)
    assert touched.returncode == 0, touched.stderr[-3000:]
    assert "Nothing to be done" in snakemake("-n", *CONFIG, cwd=work, env=env).stdout

    trainer = work / "amp" / "trainer.py"
    original = trainer.read_text()
    trainer.write_text(original + "\n# an edit\n")
    jobs = training_jobs(dry_run(work, env))
    assert {rule for rule, _ in jobs} == {"train_mp", "train_coverage"}
    coverage = {w for rule, w in jobs if rule == "train_coverage"}
    assert coverage == {f"variant={v}, study_method=mp" for v in ("initialisation", "data")}
    assert all("Params have changed" in reason for reason in jobs.values())

    trainer.write_text(original)  # the same content again: nothing to do
    assert "Nothing to be done" in snakemake("-n", *CONFIG, cwd=work, env=env).stdout

    step = work / "baselines" / "train.py"
    step.write_text(step.read_text() + "\n# an edit\n")
    jobs = training_jobs(dry_run(work, env))
    assert {rule for rule, _ in jobs} == {"train_baseline", "train_coverage"}
    baselines = {w for rule, w in jobs if rule == "train_baseline"}
    assert {re.search(r"method=(\w+)", w)[1] for w in baselines} == {"adamw", "ivon"}
    coverage = {w for rule, w in jobs if rule == "train_coverage"}
    assert coverage == {f"variant={v}, study_method=adamw" for v in ("initialisation", "data")}
