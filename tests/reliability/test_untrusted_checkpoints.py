"""Loading a checkpoint never runs code from it.

Checkpoints (trainer state, baseline checkpoints, each run's ``model.pt``, cached data sets) are
exchanged between colleagues, so every loader reads them with ``torch.load(weights_only=True)``.
A crafted file whose pickle would call ``exec`` is refused by each loader before anything runs
(the control test shows that plain pickle does run it), and so is a trainer checkpoint of the
previous format (layer specs pickled as classes), with an error that names the file. What the
harness writes is plain data that the safe loader reads; a scan of the sources keeps it so.
"""

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from reliability_harness import REPO, run_script, script_job

from amp import io, specs
from amp.io import CorruptFileError, UnsafeCheckpointError
from amp.network import Network
from amp.trainer import Trainer
from baselines.models import build_model
from baselines.predict import predict_regression
from baselines.train import TrainConfig, train
from harness.coverage_report import load_predictions
from harness.data import load_saved_dataset, make_sine, save_dataset
from harness.jobs import finish_state, resumable_state
from harness.predictions import Predictions
from harness.runs.baseline import BaselineConfig, run_baseline
from harness.runs.mp import MPConfig, run_mp

PACKAGES = ("amp", "baselines", "harness")


class RunsCode:
    """Pickles as a call of ``exec`` that writes ``marker``: what a malicious checkpoint holds."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"import pathlib; pathlib.Path({self.marker!r}).write_text('ran')",)


def write_crafted(path: Path, marker: Path) -> None:
    """A well-formed ``torch.save`` archive (valid checksums) whose pickle would run code."""
    torch.save({"version": 2, "epoch": 1, "model": {"weight": RunsCode(marker)}}, path)


def sine():
    return make_sine(n=40, seed=1, dtype=torch.float32)


def resume_baseline(path):
    data = sine()
    config = TrainConfig(epochs=1, batch_size=20, progress=False, checkpoint_path=path)
    return train(specs.arch("toy_regression"), data.x_train, data.y_train, config)


LOADERS = {
    "load_checkpoint": io.load_checkpoint,
    "trainer state": Trainer.load,
    "baseline checkpoint": resume_baseline,
    "mp run": lambda path: run_mp(
        sine(), "toy_regression", MPConfig(epochs=1, batch_size=20), checkpoint=path
    ),
    "baseline run": lambda path: run_baseline(
        sine(), "toy_regression", "adamw", BaselineConfig(epochs=1, batch_size=20), checkpoint=path
    ),
    "cached dataset": load_saved_dataset,
}


def refusal(path):
    return rf"checkpoint {path} was not written by this version of the harness: .*delete it"


def test_the_crafted_checkpoint_runs_code_through_plain_pickle(tmp_path):
    """Control: the payload is real, so the refusals below are not vacuous."""
    path, marker = tmp_path / "model.pt", tmp_path / "ran.txt"
    write_crafted(path, marker)
    torch.load(path, weights_only=False)
    assert marker.read_text() == "ran"


@pytest.mark.parametrize("loader", list(LOADERS))
def test_crafted_checkpoint_is_refused_and_runs_nothing(loader, tmp_path):
    path, marker = tmp_path / "model.pt", tmp_path / "ran.txt"
    write_crafted(path, marker)
    with pytest.raises(UnsafeCheckpointError, match=refusal(path)) as caught:
        LOADERS[loader](path)
    assert not marker.exists()
    assert "exec" in str(caught.value)
    assert isinstance(caught.value, CorruptFileError)  # callers that catch damage catch this too
    assert caught.value.__cause__ is None  # no chained unpickling traceback
    assert caught.value.__suppress_context__


def old_format_trainer_checkpoint(path):
    """A trainer checkpoint as format version 1 wrote it: layer specs pickled as dataclasses."""
    data = sine()
    net = Network(specs.arch("toy_regression"), (1,), seed=0)
    trainer = Trainer(net, 20)
    trainer.fit(data.x_train, data.y_train, epochs=1)
    state = trainer.state_dict()
    state |= {"version": 1, "specs": net.specs, "dtype": str(net.dtype)}
    state["config"]["store_dtype"] = str(trainer.store_dtype)
    torch.save(state, path)  # the old writer: no plain-data check


@pytest.mark.parametrize("loader", ["trainer state", "mp run"])
def test_old_format_trainer_checkpoint_gets_the_clear_error(loader, tmp_path):
    path = tmp_path / "checkpoint.pt"
    old_format_trainer_checkpoint(path)
    with pytest.raises(UnsafeCheckpointError, match=refusal(path)) as caught:
        LOADERS[loader](path)
    assert "amp.specs.Linear" in str(caught.value)
    assert "rerun to write it afresh" in str(caught.value)


def test_trainer_checkpoint_of_another_format_version_is_refused(tmp_path):
    path = tmp_path / "checkpoint.pt"
    net = Network(specs.arch("toy_regression"), (1,), seed=0)
    io.save_checkpoint(path, Trainer(net, 20).state_dict() | {"version": 99})
    with pytest.raises(CorruptFileError, match=rf"{path} has format version 99, .* writes 2"):
        Trainer.load(path)


def test_trainer_checkpoint_with_an_unknown_layer_type_is_refused(tmp_path):
    path = tmp_path / "checkpoint.pt"
    net = Network(specs.arch("toy_regression"), (1,), seed=0)
    state = Trainer(net, 20).state_dict()
    state["specs"][0] = {"type": "posix.system", "command": "true"}
    io.save_checkpoint(path, state)
    with pytest.raises(CorruptFileError, match=rf"checkpoint {path}: not a layer spec entry"):
        Trainer.load(path)


# ---- what the harness writes is plain data ------------------------------------------------------
def plain_load(path):
    state = torch.load(path, weights_only=True)
    assert io.plain_data_problem(state) is None
    return state


@pytest.mark.parametrize("store", ["memory", "disk"])
def test_trainer_checkpoints_are_plain_and_resume(store, tmp_path):
    data = sine()
    net = Network(specs.arch("toy_regression"), (1,), seed=0)
    store_dir = tmp_path / "store" if store == "disk" else None
    trainer = Trainer(net, 20, store_dir=store_dir, store_dtype=torch.float32)
    trainer.fit(data.x_train, data.y_train, epochs=1, checkpoint=tmp_path / "ck.pt")
    state = plain_load(tmp_path / "ck.pt")
    assert state["specs"][0] == {"type": "Linear", "out_features": 32, "prior_var": None}
    assert (state["dtype"], state["config"]["store_dtype"]) == ("float64", "float32")
    back = Trainer.load(tmp_path / "ck.pt", store_dir=store_dir and tmp_path / "store2")
    assert back.net.specs == net.specs
    assert back.store_dtype == torch.float32
    for a, b in zip(back.net.predict(data.x_test), net.predict(data.x_test), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("method", ["adamw", "ivon"])
def test_baseline_checkpoints_are_plain(method, tmp_path):
    data = sine()
    path = tmp_path / "ck.pt"
    config = TrainConfig(method, epochs=1, batch_size=20, progress=False, checkpoint_path=path)
    train(specs.arch("toy_regression"), data.x_train, data.y_train, config)
    state = plain_load(tmp_path / "ck.pt")
    assert state["shuffle_rng"].dtype == torch.uint8


@pytest.mark.parametrize("method", ["mp", "adamw"])
def test_finished_model_file_is_plain_and_predicts_as_the_run_did(method, tmp_path):
    data = sine()
    checkpoint = resumable_state(tmp_path / "state", {"method": method})
    model = tmp_path / "results" / "model.pt"
    if method == "mp":
        config = MPConfig(epochs=1, batch_size=20)
        pred = run_mp(data, "toy_regression", config, checkpoint=checkpoint)
    else:
        config = BaselineConfig(epochs=1, batch_size=20, dtype="float32")
        pred = run_baseline(data, "toy_regression", "adamw", config, checkpoint=checkpoint)
    finish_state(checkpoint, model)
    state = plain_load(model)
    if method == "mp":
        mean, var = Trainer.load(model).net.predict(data.x_test)
    else:
        net = build_model(specs.arch("toy_regression"), (1,), dtype=torch.float32)
        net.load_state_dict(state["model"])
        noise_var = specs.arch("toy_regression")[-1].noise_var
        mean, var = predict_regression(net, data.x_test, noise_var)
    np.testing.assert_array_equal(mean.numpy().astype(pred.mean.dtype), pred.mean)
    np.testing.assert_array_equal(var.numpy().astype(pred.var.dtype), pred.var)


def test_cached_dataset_is_plain(tmp_path):
    data = make_sine(n=40, seed=1)
    save_dataset(data, tmp_path / "sine.pt")
    state = plain_load(tmp_path / "sine.pt")
    assert state["format"] == "harness.data.Dataset"
    assert torch.equal(load_saved_dataset(tmp_path / "sine.pt").x_train, data.x_train)


# ---- NumPy artefacts are read without pickle ----------------------------------------------------
def test_store_snapshot_with_pickled_objects_is_refused(tmp_path):
    data = sine()
    net = Network(specs.arch("toy_regression"), (1,), seed=0)
    trainer = Trainer(net, 20, store_dir=tmp_path / "store")
    trainer.fit(data.x_train, data.y_train, epochs=1, checkpoint=tmp_path / "ck.pt")
    snapshot = next((tmp_path / "ck.pt.store").glob("epoch1-*/layer0"))
    target = sorted(snapshot.glob("*.npy"))[0]
    marker = tmp_path / "ran.txt"
    np.save(target, np.array([RunsCode(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(CorruptFileError, match=f"stored batch messages {target}"):
        Trainer.load(tmp_path / "ck.pt", store_dir=tmp_path / "store2")
    assert not marker.exists()


@pytest.mark.parametrize("reader", ["predictions", "coverage"])
def test_npz_artefacts_with_pickled_objects_are_refused(reader, tmp_path):
    path, marker = tmp_path / "a.npz", tmp_path / "ran.txt"
    objects = np.array([RunsCode(marker)], dtype=object)
    np.savez(path, format_version=np.array(1), kind=np.array("x"), metadata=objects, grid=objects)
    load = Predictions.load if reader == "predictions" else load_predictions
    with pytest.raises(CorruptFileError, match=f"{path} .*corrupt"):
        load(path)
    assert not marker.exists()


# ---- the sources keep it so ----------------------------------------------------------------------
def sources():
    files = sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))
    assert len(files) > 20
    return files


def calls(function):
    """``(file:line, keywords)`` of every call of ``module.function`` in the packages."""
    found = []
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == function.split(".")[1]
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in {function.split(".")[0], "numpy"}
            ):
                where = f"{path.relative_to(REPO)}:{node.lineno}"
                found.append((where, {k.arg: ast.unparse(k.value) for k in node.keywords}))
    return found


def test_no_source_loads_with_weights_only_false():
    hits = [
        f"{path.relative_to(REPO)}:{number}"
        for path in sources()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "weights_only=False" in line.replace(" ", "")
    ]
    assert hits == []


@pytest.mark.parametrize(
    ("function", "keyword", "value"),
    [("torch.load", "weights_only", "True"), ("np.load", "allow_pickle", "False")],
)
def test_every_load_call_names_its_safe_mode(function, keyword, value):
    found = calls(function)
    assert found  # the scan sees the calls it is meant to check
    assert [where for where, keywords in found if keywords.get(keyword) != value] == []


# ---- pipeline level -----------------------------------------------------------------------------
@pytest.mark.slow
def test_training_job_with_a_crafted_state_checkpoint_fails_and_runs_nothing(tmp_path):
    job = script_job("mp", tmp_path)
    state = tmp_path / "mp" / "state" / "checkpoint.pt"
    state.parent.mkdir(parents=True)
    (state.parent / "identity.json").write_text(json.dumps(job["params"]["identity"]))
    marker = tmp_path / "ran.txt"
    write_crafted(state, marker)
    result = run_script("mp", tmp_path)
    assert result.returncode != 0
    log = (tmp_path / "mp.log").read_text()
    assert f"UnsafeCheckpointError: checkpoint {state} was not written by this version" in log
    assert not marker.exists()
    assert not (tmp_path / "mp" / "predictions.npz").exists()
