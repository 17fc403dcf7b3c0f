import json
import logging
import sys

import pytest
import torch

from amp.runtime import DTYPES
from harness import jobs

DATA = {"root": None, "download": False}


@pytest.fixture
def fake_root(tmp_path, fake_data, no_system_data):
    fake_data.mnist(tmp_path / "FashionMNIST" / "raw", n_train=40, n_test=20)
    return tmp_path


def test_start_job_logs_to_file_and_sets_threads(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stdout", sys.stdout)
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    threads = torch.get_num_threads()
    try:
        log = jobs.start_job(tmp_path / "logs" / "job.log", threads=1)
        log.info("hello from the job")
        print("printed output")
        assert torch.get_num_threads() == 1
    finally:
        sys.stdout.flush()
        root.handlers[:] = handlers
        root.setLevel(level)
        torch.set_num_threads(threads)
    text = (tmp_path / "logs" / "job.log").read_text()
    assert "hello from the job" in text
    assert "printed output" in text
    assert "1 thread(s)" in text


@pytest.mark.parametrize("threads", [0, -1, 1.5, True])
def test_start_job_rejects_bad_threads(tmp_path, threads):
    with pytest.raises(ValueError, match="invalid threads"):
        jobs.start_job(tmp_path / "x.log", threads)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_load_inputs_per_method(fake_root, dtype):
    experiment = {"subset": 30, "test_subset": 10, "subset_seed": 1, "ood": {"name": "digits"}}
    data = {"root": str(fake_root), "download": False}
    loaded, x_ood = jobs.load_inputs(
        "fashion_mnist", experiment, data, normalization="global", dtype=dtype
    )
    assert (len(loaded.x_train), len(loaded.x_test)) == (30, 10)
    assert loaded.x_train.dtype == DTYPES[dtype]
    assert loaded.normalization["mode"] == "global"
    # global normalisation: the training pixels have mean 0 and std 1 over everything
    assert float(loaded.x_train.double().mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(loaded.x_train.double().std()) == pytest.approx(1.0, abs=1e-3)
    assert x_ood.shape == (1797, 1, 28, 28)
    per_channel, none = jobs.load_inputs(
        "fashion_mnist",
        {**experiment, "ood": None},
        data,
        normalization="per_channel",
        dtype=dtype,
    )
    assert none is None
    assert per_channel.normalization["mode"] == "per_channel"


def test_load_inputs_rejects_unknown_dtype(fake_root):
    with pytest.raises(ValueError, match="invalid dtype"):
        jobs.load_inputs("fashion_mnist", {}, DATA, normalization="global", dtype="float16")


def test_describe_inputs_per_method(fake_root):
    experiment = {"subset": 30, "ood": {"name": "digits", "subset": 50}}
    data = {"root": str(fake_root), "download": False}
    methods = {
        "mp": {"normalization": "global", "dtype": "float32", "ood_normalization": "none"},
        "adamw": {"normalization": "per_channel", "dtype": "float32"},
    }
    summary = jobs.describe_inputs("fashion_mnist", experiment, data, methods)
    json.dumps(summary)
    assert set(summary["by_method"]) == {"mp", "adamw"}
    mp = summary["by_method"]["mp"]
    assert mp["n_train"] == 30
    assert mp["normalization"]["mode"] == "global"
    assert mp["ood"]["n"] == 50
    assert mp["ood"]["normalization"] == "none"
    assert 0.0 <= mp["ood"]["mean"] <= 1.0  # raw pixels in [0, 1]
    assert summary["by_method"]["adamw"]["ood"]["normalization"] == "reference"


def test_resumable_state_keeps_matching_and_drops_stale_checkpoints(tmp_path):
    state = tmp_path / "state"
    path = jobs.resumable_state(state, {"epochs": 3})
    path.write_bytes(b"checkpoint")
    assert jobs.resumable_state(state, {"epochs": 3}).read_bytes() == b"checkpoint"
    again = jobs.resumable_state(state, {"epochs": 4})  # another run: start afresh
    assert again == path
    assert not path.exists()
    (state / "identity.json").write_text("{broken")
    path.write_bytes(b"x")
    assert not jobs.resumable_state(state, {"epochs": 4}).exists()


def test_finish_state_moves_checkpoint(tmp_path):
    path = jobs.resumable_state(tmp_path / "state", {"a": 1})
    path.write_bytes(b"weights")
    jobs.finish_state(path, tmp_path / "out" / "model.pt")
    assert (tmp_path / "out" / "model.pt").read_bytes() == b"weights"
    assert not (tmp_path / "state").exists()
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        jobs.finish_state(path, tmp_path / "model.pt")


def test_sets_config_reads_the_evaluation_section():
    evaluation = {
        "subset": 100,
        "seed": 2,
        "rotations": [0, 30],
        "corruptions": ["contrast"],
        "severities": [1, 2],
        "ood_sets": ["flipped", "mnist"],
    }
    config = jobs.sets_config(evaluation)
    assert config.rotations == (0, 30)
    assert config.corruptions == ("contrast",)
    assert config.severities == (1, 2)
    assert config.ood_sets == ("flipped", "mnist")
    assert (config.subset, config.seed) == (100, 2)
    assert jobs.sets_config({"rotations": [], "corruptions": [], "ood_sets": []}).empty


def test_predict_eval_sets_from_a_trained_model(fake_root, tmp_path):
    from harness.runs.baseline import BaselineConfig, run_baseline

    experiment = {"subset": 30, "test_subset": 20, "subset_seed": 0}
    data = {"root": str(fake_root), "download": False}
    settings = {"normalization": "per_channel", "dtype": "float32", "ood_normalization": "own"}
    loaded, _ = jobs.load_inputs("fashion_mnist", experiment, data, **settings)
    checkpoint = tmp_path / "model.pt"
    run_baseline(loaded, "mlp", "adamw", BaselineConfig(epochs=1, seed=4), checkpoint=checkpoint)
    evaluation = {"subset": 8, "seed": 0, "rotations": [90], "ood_sets": ["mnist"]}
    out = jobs.predict_eval_sets(
        "adamw",
        checkpoint,
        "fashion_mnist",
        "mlp",
        experiment=experiment,
        data=data,
        evaluation=evaluation,
        run={"dtype": "float32", "device": "cpu", "seed": 4},
        data_settings=settings,
    )
    assert sorted(out.probs) == ["clean", "rotation_90"]
    assert out.probs["clean"].shape == (8, 10)
    assert "mnist" in out.metadata["skipped"]  # not on disk in the fake data root
    assert out.metadata["method"] == "adamw"


def test_data_and_run_settings_of_a_validated_configuration():
    ood = {"name": "digits", "normalization": {"mp": "own"}}
    config = {
        "device": "cpu",
        "training": {"epochs": 2, "batch_size": 64, "evaluate_every_epoch": True},
        "experiments": {"fashion_mnist": {"ood": ood}, "sine": {"ood": None}},
        "methods": {
            "mp": {"dtype": "float32", "normalization": "global", "group_size": 8},
            "adamw": {"dtype": "float64", "normalization": "per_channel", "lr": None},
        },
    }
    assert jobs.data_settings(config, "mp", "fashion_mnist") == {
        "normalization": "global",
        "dtype": "float32",
        "ood_normalization": "own",
    }
    adamw = jobs.data_settings(config, "adamw", "fashion_mnist")
    assert adamw["ood_normalization"] == "reference"  # the library's default for an unset method
    assert jobs.data_settings(config, "mp", "sine")["ood_normalization"] == "reference"
    assert jobs.run_settings(config, "mp", "3") == {
        "dtype": "float32",
        "group_size": 8,
        "epochs": 2,
        "batch_size": 64,
        "evaluate_every_epoch": True,
        "device": "cpu",
        "seed": 3,
    }


def test_an_experiment_may_set_its_own_epochs():
    config = {
        "device": "cpu",
        "training": {"epochs": 2, "batch_size": 64, "evaluate_every_epoch": False},
        "experiments": {"fashion_mnist": {"epochs": None}, "digits": {"epochs": 20}},
        "methods": {"mp": {"dtype": "float32"}},
    }
    assert jobs.run_settings(config, "mp", 0, "fashion_mnist")["epochs"] == 2
    assert jobs.run_settings(config, "mp", 0, "digits")["epochs"] == 20
    assert jobs.run_settings(config, "mp", 0)["epochs"] == 2


def test_a_null_ood_set_means_none_and_validates():
    from snakemake.utils import validate

    from harness.gate_mutations import SCHEMA

    config = {
        "training": {"epochs": 1},
        "experiments": {"digits": {"archs": ["mlp"], "methods": ["mp"], "seeds": [0], "ood": None}},
    }
    validate(jobs.drop_null_ood(config), str(SCHEMA))  # snakemake cannot fill in a null mapping
    assert "ood" not in config["experiments"]["digits"]
    assert config["experiments"]["digits"]["epochs"] is None  # the schema's default
