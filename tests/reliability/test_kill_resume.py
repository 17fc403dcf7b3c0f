"""SIGKILL a training run right after its first checkpoint; the rerun resumes and ends the same.

Library level: each method in a child process (``reliability_harness.py train``), killed one
step into epoch 2, then run again to the end, and compared with an uninterrupted child run.
Pipeline level (slow): ``snakemake`` on a tiny configuration in a copy of the workflow, its
process group killed once the MP job has checkpointed, the same target run again.
"""

import json
import os
import re
import signal
import subprocess

import numpy as np
import pytest
import torch
import yaml
from pipeline_harness import (
    copy_workflow,
    fashion_mnist_available,
    run_snakemake,
    snakemake_command,
)
from reliability_harness import (
    EPOCHS,
    STEPS_PER_EPOCH,
    kill_group,
    run_child,
    start_child,
    tiny_config,
    wait_for,
)

from amp.io import load_checkpoint
from amp.trainer import Trainer
from harness.data import make_sine
from harness.predictions import Predictions
from harness.runs.mp import MPConfig, run_mp

ARTIFACTS = {"mp": ["mp"], "adamw": ["adamw"], "ivon": ["ivon", "ivon_mean"]}


def saved_history(method, checkpoint):
    """Epoch counter and per-epoch history stored in a checkpoint of either kind."""
    if method == "mp":
        trainer = Trainer.load(checkpoint)
        return trainer.epoch, trainer.history
    state = load_checkpoint(checkpoint)
    return state["epoch"], state["history"]


def without_seconds(history):
    return [{k: v for k, v in entry.items() if k != "seconds"} for entry in history]


def kill_and_resume(method, tmp_path, *hang):
    """Kill a child run where ``hang`` holds it, rerun it and an uninterrupted one; compare."""
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    checkpoint = killed / "checkpoint.pt"
    child = start_child("train", method, str(killed), *hang)
    wait_for(killed / "hanging", child)
    assert kill_group(child) == -signal.SIGKILL
    epoch, history_at_kill = saved_history(method, checkpoint)
    assert epoch == 1
    assert not (killed / f"{ARTIFACTS[method][0]}.npz").exists()

    rerun = run_child("train", method, str(killed), str(reference))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr

    # The rerun did only the remaining epochs' steps; epoch 1 (with its timing) came from disk.
    steps = {d: json.loads((d / "steps.json").read_text())["steps"] for d in (killed, reference)}
    assert steps == {killed: (EPOCHS - 1) * STEPS_PER_EPOCH, reference: EPOCHS * STEPS_PER_EPOCH}
    epoch, final_history = saved_history(method, checkpoint)
    assert epoch == EPOCHS
    assert final_history[0] == history_at_kill[0]

    for name in ARTIFACTS[method]:
        a = Predictions.load(killed / f"{name}.npz")
        b = Predictions.load(reference / f"{name}.npz")
        assert np.array_equal(a.probs, b.probs), name  # bit-identical on the CPU
        assert np.array_equal(a.labels, b.labels)
        history_a, history_b = a.metadata["history"], b.metadata["history"]
        assert history_a[0]["seconds"] == history_at_kill[0]["seconds"]
        assert all("test" in entry for entry in history_a), "a per-epoch test score was lost"
        assert without_seconds(history_a) == without_seconds(history_b)


@pytest.mark.parametrize("method", ["mp", "adamw", "ivon"])
def test_run_killed_in_epoch_2_resumes_and_matches_an_uninterrupted_run(method, tmp_path):
    kill_and_resume(method, tmp_path, "--hang-at-step", str(STEPS_PER_EPOCH + 2))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["mp", "adamw", "ivon"])
def test_run_killed_right_after_its_checkpoint_resumes_with_every_score(method, tmp_path):
    kill_and_resume(method, tmp_path, "--hang-after-save")


@pytest.mark.parametrize(
    ("change", "differs"),
    [
        ({"batch_size": 50}, "['batch_size']"),
        ({"seed": 1}, "['seed']"),
        ({"schedule": "sequential"}, "['schedule']"),
        ({"dtype": "float32"}, "['dtype', 'store_dtype']"),
        ({"epochs": 1}, "['epochs']"),
    ],
)
def test_mp_refuses_to_resume_the_checkpoint_of_another_run(change, differs, tmp_path):
    data = make_sine(seed=1)
    settings = {"epochs": 2, "batch_size": 40, "seed": 0}
    ck = tmp_path / "mp.pt"
    run_mp(data, "toy_regression", MPConfig(**settings), checkpoint=ck)
    before = ck.read_bytes()
    message = rf"belongs to a different run \(differs in {re.escape(differs)}\)"
    with pytest.raises(ValueError, match=message):
        run_mp(data, "toy_regression", MPConfig(**(settings | change)), checkpoint=ck)
    assert ck.read_bytes() == before
    with pytest.raises(ValueError, match=r"differs in \['examples'\]"):
        run_mp(make_sine(n=300, seed=1), "toy_regression", MPConfig(**settings), checkpoint=ck)


# ------------------------------------------------------------------------------ pipeline
def comparable(record):
    """A metrics.json record without its timings: ``timing`` and ``history[*].seconds``."""
    out = {k: v for k, v in record.items() if k != "timing"}
    out["history"] = without_seconds(record["history"])
    return json.dumps(out, sort_keys=True)


@pytest.mark.slow
def test_killed_pipeline_resumes_the_training_job(tmp_path):
    """SIGKILL snakemake and its jobs after MP's first checkpoint; the rerun continues it.

    The finished pipeline then equals an uninterrupted one: identical predictions and identical
    metrics.json apart from timings.
    """
    if not fashion_mnist_available():
        pytest.skip("Fashion-MNIST is not installed (make data)")
    config = tiny_config(["mp", "adamw", "ivon"], subset=1000, epochs=3)
    results = {}
    for name in ("killed", "reference"):
        work = tmp_path / name
        work.mkdir()
        copy_workflow(work)
        (work / "tiny.yaml").write_text(yaml.safe_dump(config))
        results[name] = work / config["paths"]["results"]
    work = tmp_path / "killed"
    run = results["killed"] / "fashion_mnist" / "mlp" / "mp" / "seed0"
    state = run / "state" / "checkpoint.pt"
    target = f"{config['paths']['results']}/summary.json"  # every run's metrics.json
    args = (target, "--cores", "2", "--configfile", "tiny.yaml")
    process = subprocess.Popen(
        snakemake_command(*args),
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_for(state, process, timeout=600)
    assert kill_group(process) == -signal.SIGKILL
    at_kill = Trainer.load(state)
    assert 1 <= at_kill.epoch < 3
    assert not (run / "model.pt").exists()

    # After a kill Snakemake's lock remains: `--unlock` first (Snakemake's own advice); a job
    # killed while writing its outputs would also need `--rerun-incomplete`.
    unlock = run_snakemake("--unlock", "--configfile", "tiny.yaml", cwd=work, timeout=900)
    assert unlock.returncode == 0, unlock.stderr[-3000:]
    again = run_snakemake(*args, "--rerun-incomplete", cwd=work, timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]

    log = work / config["paths"]["logs"] / "train_mp" / "fashion_mnist" / "mlp" / "seed0.log"
    text = log.read_text()
    assert f"resuming from {os.path.relpath(state, work)} after epoch {at_kill.epoch} of 3" in text
    final = Trainer.load(run / "model.pt")
    assert final.epoch == 3
    assert final.history[: at_kill.epoch] == at_kill.history  # timings too: not trained again

    reference = tmp_path / "reference"
    full = run_snakemake(*args, cwd=reference, timeout=900)
    assert full.returncode == 0, full.stdout[-3000:] + full.stderr[-3000:]
    killed_results = results["killed"]
    metrics = sorted(p.relative_to(killed_results) for p in killed_results.rglob("metrics.json"))
    assert len(metrics) == 4  # mp, adamw, ivon, ivon_mean
    for path in metrics:
        a = json.loads((results["killed"] / path).read_text())
        b = json.loads((results["reference"] / path).read_text())
        assert comparable(a) == comparable(b), path
        pred = path.with_name("predictions.npz")
        if path.parts[-3] == "ivon_mean":  # IVON@mean is written beside its IVON run
            pred = path.parents[2] / "ivon" / path.parts[-2] / "predictions_mean.npz"
        pa = Predictions.load(results["killed"] / pred)
        pb = Predictions.load(results["reference"] / pred)
        assert np.array_equal(pa.probs, pb.probs)
        assert np.array_equal(pa.probs_ood, pb.probs_ood)
    assert torch.equal(
        final.net.weight_layers[0].q_w.tau,
        Trainer.load(results["reference"] / run.relative_to(results["killed"]) / "model.pt")
        .net.weight_layers[0]
        .q_w.tau,
    )
