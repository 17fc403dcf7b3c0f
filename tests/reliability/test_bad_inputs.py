"""Bad input gets a clear error that names the problem and the fix, before any training.

NaN/inf values, labels out of range, mismatched shapes, unnormalised inputs
(:func:`harness.data.check_input_scale`), probabilities that do not sum to one, and misspelt
configuration keys (a real, not dry, Snakemake run).
"""

import dataclasses
import math
import subprocess

import numpy as np
import pytest
import torch
import yaml
from pipeline_harness import copy_workflow, snakemake_command

from amp import specs
from amp.network import Network
from amp.trainer import Trainer
from baselines.train import DivergenceError, TrainConfig, train
from harness import metrics
from harness.data import INPUT_ABS_LIMIT, DataError, Dataset, check_input_scale, make_sine
from harness.predictions import Predictions
from harness.runs.baseline import BaselineConfig, run_baseline
from harness.runs.mp import MPConfig, check_run_inputs, run_mp

MLP = specs.arch("mlp")


def images(n=40, k=10, scale=1.0, seed=0):
    """A small image classification data set with pixels in [0, scale]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2 * n, 1, 28, 28, generator=g) * scale
    y = torch.arange(2 * n) % k
    return Dataset(
        name="toy",
        task="classification",
        x_train=x[:n],
        y_train=y[:n],
        x_test=x[n:],
        y_test=y[n:],
        input_shape=(1, 28, 28),
        num_classes=k,
        classes=None,
        normalization={"mode": "none"},
    )


RUNS = {
    "mp": lambda data, arch="mlp", **kw: run_mp(data, arch, MPConfig(epochs=1), **kw),
    "adamw": lambda data, arch="mlp", **kw: run_baseline(
        data, arch, "adamw", BaselineConfig(epochs=1), **kw
    ),
}


# ------------------------------------------------------------------------------ NaN / inf
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("split", ["train", "test"])
def test_non_finite_inputs_are_refused_when_the_data_set_is_made(bad, split):
    data = images()
    x = getattr(data, f"x_{split}").clone()
    x[3, 0, 5, 5] = bad
    with pytest.raises(DataError, match=rf"toy \({split} split\): inputs contain NaN or inf"):
        dataclasses.replace(data, **{f"x_{split}": x})


def test_non_finite_targets_are_refused():
    data = make_sine()
    y = data.y_train.clone()
    y[0, 0] = math.nan
    with pytest.raises(DataError, match=r"sine \(train split\): targets contain NaN or inf"):
        dataclasses.replace(data, y_train=y)


def test_non_finite_tensors_given_to_the_trainers_directly():
    x, y = torch.zeros(20, 1, dtype=torch.float64), torch.zeros(20, 1, dtype=torch.float64)
    x[4] = math.inf
    net = Network(specs.arch("toy_regression"), (1,), seed=0)
    with pytest.raises(ValueError, match="inputs contain NaN or infinite values; clean the data"):
        Trainer(net, 10).fit(x, y)
    # The baselines have no data check of their own: the loss becomes NaN at once and the
    # error says where to look.
    layers = (specs.Linear(2), specs.Argmax())
    with pytest.raises(DivergenceError, match="loss nan at epoch 1, batch 1/1; check the data"):
        train(layers, x.float(), torch.zeros(20, dtype=torch.int64), TrainConfig(progress=False))


@pytest.mark.parametrize("method", list(RUNS))
def test_bad_ood_inputs_are_refused_before_training(method):
    data = images()
    ood = torch.rand(5, 1, 28, 28)
    ood[0, 0, 0, 0] = math.nan
    with pytest.raises(DataError, match="ood_inputs contain NaN or inf"):
        RUNS[method](data, ood_inputs=ood)
    with pytest.raises(ValueError, match=r"shape \(5, 3, 32, 32\), expected \(M, 1, 28, 28\)"):
        RUNS[method](data, ood_inputs=torch.rand(5, 3, 32, 32))


# -------------------------------------------------------------------------------- labels
def test_labels_out_of_range_everywhere():
    data = images()
    with pytest.raises(DataError, match=r"labels must lie in \[0, 9\], found 3\.\.12"):
        dataclasses.replace(data, y_train=data.y_train + 3)
    with pytest.raises(DataError, match=r"labels must lie in \[0, 9\], found -1\.\.8"):
        dataclasses.replace(data, y_test=data.y_test - 1)
    net = Network([specs.Linear(3), specs.Argmax()], (2,), seed=0)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\), got \[0, 3\]"):
        Trainer(net, 4).fit(torch.zeros(4, 2, dtype=torch.float64), torch.arange(4))
    with pytest.raises(ValueError, match=r"invalid y: labels must lie in \[0, 2\]"):
        train((specs.Linear(3), specs.Argmax()), torch.zeros(4, 2), torch.arange(4))
    probs = np.full((4, 3), 1 / 3)
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.2, got range 0\.\.3"):
        metrics.nll(probs, np.arange(4))


@pytest.mark.parametrize("method", list(RUNS))
def test_more_classes_than_network_outputs_is_refused(method):
    data = images(n=24, k=12)
    with pytest.raises(ValueError, match="has 12 classes but architecture 'mlp' has 10 outputs"):
        RUNS[method](data)


# -------------------------------------------------------------------------------- shapes
def test_mismatched_shapes_get_clear_errors():
    data = images()
    with pytest.raises(DataError, match=r"toy \(train split\): 40 inputs but 39 targets"):
        dataclasses.replace(data, y_train=data.y_train[:39])
    with pytest.raises(DataError, match=r"inputs must be float \('N', 1, 28, 28\)"):
        dataclasses.replace(data, x_test=torch.zeros(40, 1, 28, 27))
    flat = dataclasses.replace(
        data,
        x_train=data.x_train.flatten(1),
        x_test=data.x_test.flatten(1),
        input_shape=(784,),
    )
    with pytest.raises(ValueError, match=r"layer 0 \(Conv2d\) needs a \(C, H, W\) input"):
        run_mp(flat, "lenet5", MPConfig(epochs=1))
    with pytest.raises(ValueError, match=r"labels shape \(3,\) does not match probs \(4, 10\)"):
        Predictions(probs=np.full((4, 10), 0.1), labels=np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match=r"targets shape \(4, 1\) differs from mean shape \(4,\)"):
        metrics.rmse(np.zeros(4), np.zeros((4, 1)))


@pytest.mark.parametrize("method", list(RUNS))
def test_task_mismatch_names_both_sides(method):
    with pytest.raises(
        ValueError,
        match="architecture 'mlp' is a classification network but data set 'sine' is a "
        r"regression task; use an architecture that ends in Regression\(noise_var\)",
    ):
        RUNS[method](make_sine(dtype=torch.float32))
    with pytest.raises(ValueError, match=r"is a regression network .* ends in Argmax\(\)"):
        check_run_inputs(images(), "toy_regression", specs.arch("toy_regression"))


# ------------------------------------------------------------------------ unnormalised
@pytest.mark.parametrize("method", list(RUNS))
def test_raw_pixels_are_refused(method):
    data = images(scale=255.0)
    raw = dataclasses.replace(data, x_train=data.x_train.round(), x_test=data.x_test.round())
    with pytest.raises(DataError, match=r"toy train inputs are whole numbers from 0 to 255, raw"):
        RUNS[method](raw)


@pytest.mark.parametrize("method", list(RUNS))
def test_inputs_beyond_the_limit_are_refused(method):
    data = images(scale=5000.0)
    with pytest.raises(DataError, match=r"toy train inputs reach \|x\| = 5.*above INPUT_ABS_LIMIT"):
        RUNS[method](data)


def test_input_scale_rules_and_their_boundary():
    x = torch.full((3, 4), INPUT_ABS_LIMIT)
    check_input_scale(x)  # at the limit: accepted
    check_input_scale(-x)
    with pytest.raises(DataError, match="not normalised; scale pixels to"):
        check_input_scale(x.nextafter(torch.tensor(math.inf)))
    check_input_scale(torch.arange(48.0).view(4, 1, 3, 4) / 47)  # pixels in [0, 1]
    check_input_scale(torch.arange(48.0).view(4, 1, 3, 4) - 20)  # whole, but not raw pixels
    check_input_scale(torch.arange(48.0).view(4, 12))  # whole numbers in vector data (counts)
    with pytest.raises(DataError, match="whole numbers from 0 to 47"):
        check_input_scale(torch.arange(48.0).view(4, 1, 3, 4))


def test_normalised_data_pass_the_checks():
    data = images()
    check_run_inputs(data, "mlp", MLP)
    from reliability_harness import tiny_dataset

    for mode in ("global", "per_channel", "none"):
        tiny = tiny_dataset(n_train=50, n_test=20, normalization=mode)
        check_run_inputs(tiny, "mlp", MLP)


# ---------------------------------------------------------------------- probabilities
def test_probabilities_must_sum_to_one():
    rng = np.random.default_rng(0)
    probs, labels = rng.dirichlet(np.ones(5), size=30), rng.integers(0, 5, 30)
    metrics.classification_metrics(probs * (1 + 0.9 * metrics.PROB_SUM_TOL), labels)  # tolerated
    with pytest.raises(ValueError, match=r"rows of probs must sum to 1 \(worst \|sum - 1\| = 0.01"):
        metrics.classification_metrics(probs * 1.01, labels)
    with pytest.raises(ValueError, match="divide each row by its sum"):
        Predictions(probs=probs * 0.5, labels=labels).metrics()
    with pytest.raises(ValueError, match="pass probabilities, not logits"):
        metrics.accuracy(np.log(probs), labels)
    with pytest.raises(ValueError, match="probs_out has negative entries"):
        metrics.ood_scores(probs, -probs)
    nan = probs.copy()
    nan[2, 1] = math.nan
    with pytest.raises(ValueError, match="probs contains 1 NaN or infinite values"):
        metrics.brier(nan, labels)
    with pytest.raises(ValueError, match="var must be positive, found 1 entries <= 0"):
        metrics.gaussian_nll(np.zeros(3), np.array([1.0, 0.0, 1.0]), np.zeros(3))


# ---------------------------------------------------------------------- configuration
def test_misspelt_configuration_keys_stop_a_real_run(tmp_path):
    work = copy_workflow(tmp_path)
    config = yaml.safe_load((work / "configs" / "ci.yaml").read_text())
    config["training"]["epohcs"] = config["training"].pop("epochs")
    config["methods"]["mp"]["shedule"] = "scaled"
    (work / "bad.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        snakemake_command("all", "--cores", "1", "--configfile", "bad.yaml"),
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"invalid configuration ({work / 'bad.yaml'})" in output
    assert "training.epohcs: unknown key 'epohcs'; allowed here: batch_size, epochs" in output
    assert "methods.mp.shedule: unknown key 'shedule'" in output
    assert "training: 'epochs' is a required property" in output
    assert not (work / "results").exists()  # nothing ran
    assert not (work / "logs").exists()
