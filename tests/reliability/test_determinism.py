"""The same configuration and seed give the same metrics.json, byte for byte, apart from timings.

``metrics.json`` (:func:`harness.report.run_record`, written by :func:`amp.io.write_json`) keeps
timings in two places, and only there: the ``timing`` object (``train_seconds``,
``seconds_per_epoch``, ``predict_seconds`` and, in the pipeline, Snakemake's ``job_seconds`` and
``max_rss_mb``) and ``seconds`` in every ``history`` entry. Here each method runs twice on the
CPU (library level: ``run_mp`` / ``run_baseline`` and the evaluation step); the pipeline-level
comparison is part of the slow kill-and-resume test in ``test_kill_resume.py``.
"""

import json

import pytest
from reliability_harness import tiny_dataset

from amp.io import write_json
from harness.data import load_ood
from harness.report import run_record
from harness.runs.baseline import BaselineConfig, run_baseline
from harness.runs.mp import MPConfig, run_mp

TIMING_KEYS = {"train_seconds", "seconds_per_epoch", "predict_seconds"}  # + job_seconds, max_rss_mb


def metrics_files(method, directory):
    """metrics.json of every artifact of one run, as the pipeline's evaluate step writes it."""
    data = tiny_dataset()
    ood = load_ood("digits", data, subset=100)
    if method == "mp":
        config = MPConfig(epochs=3, batch_size=64, dtype="float32", seed=1)
        out = {"mp": run_mp(data, "mlp", config, ood_inputs=ood, metadata={"seed": 1})}
    else:
        config = BaselineConfig(epochs=2, batch_size=64, seed=1, test_samples=10)
        out = run_baseline(data, "mlp", method, config, ood_inputs=ood, metadata={"seed": 1})
        out = out if isinstance(out, dict) else {method: out}
    paths = {}
    for name, predictions in out.items():
        record = run_record(predictions, dataset=data.name, arch="mlp", method=name, seed=1)
        paths[name] = directory / name / "metrics.json"
        write_json(paths[name], record)
    return paths


def with_timings_of(record, other):
    """``record`` with every timing field taken from ``other``."""
    out = dict(record, timing=other["timing"])
    out["history"] = [
        dict(entry, seconds=theirs["seconds"])
        for entry, theirs in zip(record["history"], other["history"], strict=True)
    ]
    return out


@pytest.mark.parametrize("method", ["mp", "adamw", "ivon"])
def test_two_runs_give_identical_metrics_apart_from_timings(method, tmp_path):
    first = metrics_files(method, tmp_path / "first")
    second = metrics_files(method, tmp_path / "second")
    assert first.keys() == second.keys()
    for name in first:
        a, b = json.loads(first[name].read_text()), json.loads(second[name].read_text())
        assert set(a["timing"]) == TIMING_KEYS
        assert a["metrics"]["ood_auroc"] > 0  # OOD metrics are part of the comparison
        # Byte for byte: run 1's record with run 2's timings is run 2's file.
        write_json(tmp_path / "swapped.json", with_timings_of(a, b))
        assert (tmp_path / "swapped.json").read_bytes() == second[name].read_bytes()
