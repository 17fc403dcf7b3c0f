"""Shared pieces of the reliability tests: tiny runs in child processes, faults, pipeline copies.

Imported by the tests (pytest puts this directory on ``sys.path``) and run as a script in child
processes, so that a run can be killed with SIGKILL:

    python reliability_harness.py train METHOD WORKDIR... [--hang-at-step S | --hang-after-save]
    python reliability_harness.py script SCRIPT JOB.json [--inject VALUE EPOCH]

``train`` runs one method on a tiny data set with its checkpoint in ``WORKDIR`` and writes the
predictions plus ``steps.json`` (the training steps this process did); several ``WORKDIR`` run
one after another in the same process. ``--hang-at-step S`` makes the process sleep before its
S-th training step (MP: batch visit), ``--hang-after-save`` right after its first checkpoint,
so that a parent can kill it there. ``script`` runs a workflow script with a stand-in for the
``snakemake`` object (:func:`script_job`), optionally with a non-finite value injected into
training.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[2]
HARNESS = Path(__file__).resolve()

N_TRAIN, N_TEST, EPOCHS, BATCH = 300, 100, 3, 64
STEPS_PER_EPOCH = -(-N_TRAIN // BATCH)
"""MP batch visits or baseline optimiser steps per epoch of :func:`run_method`."""


# ------------------------------------------------------------------------------ tiny runs
def tiny_dataset(n_train: int = N_TRAIN, n_test: int = N_TEST, normalization: str = "global"):
    """A seeded Fashion-MNIST subset, or scikit-learn's digits where Fashion-MNIST is missing."""
    import torch

    from harness.data import DatasetNotFoundError, load_dataset

    kwargs = {"subset": n_train, "test_subset": n_test, "seed": 0, "dtype": torch.float32}
    try:
        return load_dataset("fashion_mnist", normalization=normalization, **kwargs)
    except DatasetNotFoundError:
        return load_dataset("digits", normalization=normalization, **kwargs)


def run_method(method: str, workdir: Path, *, epochs: int = EPOCHS, checkpoint: bool = True):
    """Train ``method`` ("mp", "adamw", "ivon") on the tiny data; returns its predictions."""
    from harness.runs.baseline import BaselineConfig, run_baseline
    from harness.runs.mp import MPConfig, run_mp

    data = tiny_dataset()
    path = Path(workdir) / "checkpoint.pt" if checkpoint else None
    if method == "mp":
        config = MPConfig(epochs=epochs, batch_size=BATCH, dtype="float32", seed=0)
        return {"mp": run_mp(data, "mlp", config, checkpoint=path)}
    config = BaselineConfig(epochs=epochs, batch_size=BATCH, seed=0, test_samples=10)
    out = run_baseline(data, "mlp", method, config, checkpoint=path)
    return out if isinstance(out, dict) else {method: out}


def _instrument(hang_at: int | None, hang_after_save: bool, marker: Path) -> list[int]:
    """Count training steps (MP batch visits, baseline optimiser steps); optionally hang.

    ``hang_at``: sleep before that step. ``hang_after_save``: sleep right after the first
    checkpoint has been written (before anything else happens in that epoch).
    """
    import importlib

    from amp import io
    from amp.trainer import Trainer

    baseline_train = importlib.import_module("baselines.train")  # the package exports `train`
    counter = [0]

    def hang():
        marker.touch()
        time.sleep(600)

    def counted(function):
        def wrapper(*args, **kwargs):
            counter[0] += 1
            if counter[0] == hang_at:
                hang()
            return function(*args, **kwargs)

        return wrapper

    def hanging_after(save):
        def wrapper(*args, **kwargs):
            save(*args, **kwargs)
            if hang_after_save:
                hang()

        return wrapper

    Trainer._visit = counted(Trainer._visit)
    baseline_train._train_step = counted(baseline_train._train_step)
    io.save_checkpoint = hanging_after(io.save_checkpoint)  # what Trainer.save calls
    baseline_train.save_checkpoint = hanging_after(baseline_train.save_checkpoint)
    return counter


def _train_main(argv: list[str]) -> None:
    import argparse

    import torch

    parser = argparse.ArgumentParser(prog="reliability_harness.py train")
    parser.add_argument("method")
    parser.add_argument("workdirs", nargs="+", type=Path, help="runs, one after another")
    parser.add_argument("--hang-at-step", type=int)
    parser.add_argument("--hang-after-save", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    marker = args.workdirs[0] / "hanging"
    counter = _instrument(args.hang_at_step, args.hang_after_save, marker)
    for workdir in args.workdirs:
        workdir.mkdir(parents=True, exist_ok=True)
        counter[0] = 0
        for name, predictions in run_method(args.method, workdir).items():
            predictions.save(workdir / f"{name}.npz")
        (workdir / "steps.json").write_text(json.dumps({"steps": counter[0]}))


# ------------------------------------------------------------------- workflow scripts
class _Named(list):
    """What Snakemake passes as ``snakemake.output`` etc.: a list with named entries."""

    def __init__(self, mapping: dict) -> None:
        super().__init__(mapping.values())
        self.__dict__.update(mapping)

    def __getitem__(self, key):
        return self.__dict__[key] if isinstance(key, str) else super().__getitem__(key)


def dataset_name() -> str:
    """``fashion_mnist`` where it is installed, else ``digits`` (it ships with scikit-learn)."""
    from harness.data import DatasetNotFoundError, load_dataset

    try:
        load_dataset("fashion_mnist", subset=1, test_subset=1)
    except DatasetNotFoundError:
        return "digits"
    return "fashion_mnist"


def script_job(method: str, workdir: Path, *, epochs: int = EPOCHS) -> dict:
    """What Snakemake would pass to ``train_mp.py`` / ``train_baseline.py`` for a tiny run."""
    workdir = Path(workdir)
    run = {"epochs": epochs, "batch_size": BATCH, "dtype": "float32", "seed": 0}
    if method == "mp":
        run |= {"schedule": "scaled", "group_size": 16}
    else:
        run |= {"test_samples": 10}
    settings = {
        "normalization": "global" if method == "mp" else "per_channel",
        "dtype": "float32",
        "ood_normalization": "reference",
    }
    outputs = {"predictions": str(workdir / method / "predictions.npz")}
    if method != "mp":
        outputs["predictions_mean"] = str(workdir / method / "predictions_mean.npz")
    outputs["model"] = str(workdir / method / "model.pt")
    experiment = {"subset": N_TRAIN, "test_subset": N_TEST, "subset_seed": 0, "ood": None}
    return {
        "threads": 1,
        "wildcards": {"dataset": dataset_name(), "arch": "mlp", "seed": "0"},
        "log": {"log": str(workdir / f"{method}.log")},
        "output": outputs,
        "params": {
            "method": method,
            "experiment": experiment,
            "data": {"root": None, "download": False},
            "data_settings": settings,
            "run": run,
            "identity": {"method": method, "run": run, "data": settings},
            "state": str(workdir / method / "state"),
        },
    }


def _script_main(argv: list[str]) -> None:
    """Run a workflow script with a stand-in ``snakemake`` object; optionally inject a fault.

    ``argv``: script file name, JSON file of :func:`script_job`, and optionally
    ``--inject VALUE EPOCH``: MP gets VALUE (``nan``/``inf``) in a marginal of weight layer 1
    before the first batch of EPOCH; the baselines get their loss multiplied by VALUE in the
    first step of EPOCH.
    """
    import importlib
    import runpy

    import torch

    from amp.trainer import Trainer

    script, job = argv[0], json.loads(Path(argv[1]).read_text())
    if len(argv) > 2 and argv[2] == "--inject":
        value, epoch = float(argv[3]), int(argv[4])
        real_visit = Trainer._visit

        def poisoned_visit(self, *args, **kwargs):
            if self.epoch + 1 == epoch:
                self.totals[1][0].tau[0, 0] = value
            return real_visit(self, *args, **kwargs)

        Trainer._visit = poisoned_visit
        baseline_train = importlib.import_module("baselines.train")
        real_step, steps = baseline_train._train_step, [0]

        def poisoned_step(model, optimizer, loss_fn, *args):
            steps[0] += 1
            if steps[0] == (epoch - 1) * STEPS_PER_EPOCH + 1:
                return real_step(model, optimizer, lambda *a: loss_fn(*a) * value, *args)
            return real_step(model, optimizer, loss_fn, *args)

        baseline_train._train_step = poisoned_step
    snakemake = SimpleNamespace(
        threads=job["threads"],
        wildcards=SimpleNamespace(**job["wildcards"]),
        log=_Named(job["log"]),
        output=_Named(job["output"]),
        params=SimpleNamespace(**job["params"]),
    )
    torch.set_num_threads(1)
    runpy.run_path(
        str(REPO / "workflow" / "scripts" / script),
        init_globals={"snakemake": snakemake},
        run_name="__main__",
    )


def run_script(method: str, workdir: Path, *inject: str) -> subprocess.CompletedProcess:
    """Run the training script of ``method`` for :func:`script_job` in a child process."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    job = workdir / f"{method}.json"
    job.write_text(json.dumps(script_job(method, workdir)))
    script = "train_mp.py" if method == "mp" else "train_baseline.py"
    return run_child("script", script, str(job), *inject)


# ------------------------------------------------------------------------ child processes
def child_env() -> dict[str, str]:
    """Environment of child processes: one thread, the repository importable."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def start_child(*args: str) -> subprocess.Popen:
    """Start this file as a script in its own process group."""
    return subprocess.Popen(
        [sys.executable, str(HARNESS), *args],
        cwd=REPO,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def run_child(
    *args: str, timeout: float = 300, script: Path = HARNESS
) -> subprocess.CompletedProcess:
    """Run this file (or another ``script``) as a script to the end."""
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 300) -> None:
    """Poll until ``path`` exists; fail if the process ends first."""
    deadline = time.monotonic() + timeout
    while not Path(path).exists():
        if process.poll() is not None:
            output = process.stdout.read()[-3000:] if process.stdout else ""
            raise AssertionError(
                f"process ended ({process.returncode}) before {path} appeared:\n{output}"
            )
        if time.monotonic() > deadline:
            kill_group(process)
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.02)


def kill_group(process: subprocess.Popen) -> int:
    """SIGKILL the process group of ``process``; returns the exit status."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    return process.returncode


# ------------------------------------------------------------------------------ pipeline
def tiny_config(methods: list[str], *, subset: int = 600, epochs: int = 3) -> dict:
    """``configs/ci.yaml`` shrunk: a few hundred images, a few epochs, one seed."""
    import yaml

    config = yaml.safe_load((REPO / "configs" / "ci.yaml").read_text())
    config["training"].update(epochs=epochs, batch_size=64)
    experiment = config["experiments"]["fashion_mnist"]
    experiment.update(methods=methods, subset=subset, test_subset=200)
    experiment["ood"]["subset"] = 200
    config["methods"]["ivon"]["test_samples"] = 10
    return config


if __name__ == "__main__":
    if sys.argv[1] == "train":
        _train_main(sys.argv[2:])
    elif sys.argv[1] == "script":
        _script_main(sys.argv[2:])
    else:
        raise SystemExit(f"unknown command {sys.argv[1]!r}")
