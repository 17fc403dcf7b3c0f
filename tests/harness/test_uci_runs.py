"""UCI runs: the protocol's settings, training several splits at once, noise selection."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from amp import specs
from amp.io import CorruptFileError
from harness.data.uci import load_uci
from harness.uci.fit import fit_predict
from harness.uci.protocol import (
    NOISE_GRID,
    MPSettings,
    Protocol,
    epochs_for,
    method_settings,
    uci_layers,
)
from harness.uci.runs import load_run, run_uci, save_run
from harness.uci.scoring import split_metrics

GRID = (0.01, 0.3)


def stacked(name, splits, validation=False):
    data = [load_uci(name, k, validation=validation) for k in splits]
    return (
        torch.stack([getattr(d, key) for d in data]) for key in ("x_train", "y_train", "x_test")
    )


def test_protocol_network_and_epochs():
    layers = uci_layers("protein", 0.1)
    assert layers == (
        specs.Linear(100),
        specs.LeakyReLU(0.1),
        specs.Linear(1),
        specs.Regression(0.1),
    )
    assert uci_layers("boston", 0.5)[0] == specs.Linear(50)
    assert specs.count_parameters(uci_layers("boston", 1.0), (13,)) == 13 * 50 + 50 + 50 + 1
    assert epochs_for(MPSettings(), "boston") == 40
    assert epochs_for(MPSettings(), "protein") == 20
    assert epochs_for(MPSettings(epochs=7), "protein") == 7
    assert epochs_for(MPSettings(epochs={"kin8nm": 5}), "kin8nm") == 5
    assert epochs_for(MPSettings(epochs={"kin8nm": 5}), "yacht") == 40
    with pytest.raises(ValueError, match="unknown UCI sets"):
        epochs_for(MPSettings(epochs={"kin8": 5}), "yacht")
    with pytest.raises(ValueError, match="unknown mp settings"):
        method_settings("mp", {"lr": 0.1})
    with pytest.raises(ValueError, match="invalid noise_var"):
        uci_layers("yacht", 0.0)
    assert Protocol(noise_grid=[0.3, 0.01, 0.3]).noise_grid == (0.01, 0.3)
    assert list(NOISE_GRID) == sorted(NOISE_GRID)


def test_mp_split_networks_do_not_depend_on_their_neighbours():
    """A split trained beside others gives what it gives alone (its own initial draw)."""
    settings = MPSettings(epochs=1)
    x, y, x_test = stacked("yacht", [0, 3])
    pair = fit_predict("yacht", settings, x, y, x_test, 0.01, splits=[0, 3], seed=5)
    alone = fit_predict("yacht", settings, x[1:], y[1:], x_test[1:], 0.01, splits=[3], seed=5)
    np.testing.assert_allclose(pair.mean[1], alone.mean[0], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(pair.var[1], alone.var[0], rtol=1e-9)
    assert not np.allclose(pair.mean[0], pair.mean[1])
    other_seed = fit_predict("yacht", settings, x[1:], y[1:], x_test[1:], 0.01, splits=[3], seed=6)
    assert not np.allclose(other_seed.mean, alone.mean)


def test_adamw_training_does_not_depend_on_the_noise_variance():
    """The shortcut of the selection: AdamW's steps ignore the loss's 1/σ² scale."""
    settings = method_settings("adamw", {"epochs": 3, "dtype": "float64"})
    x, y, x_test = stacked("yacht", [1])
    a = fit_predict("yacht", settings, x, y, x_test, 1.0, splits=[1])
    b = fit_predict("yacht", settings, x, y, x_test, 0.01, splits=[1])
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-5, atol=1e-6)
    assert np.all(a.var == 1.0)
    assert np.all(b.var == 0.01)


def test_ivon_is_stable_at_small_noise_variance():
    """IVON trains on the squared error with ess = N / σ², so σ² = 1e-3 does not blow up."""
    settings = method_settings("ivon", {"epochs": 3, "test_samples": 10})
    x, y, x_test = stacked("yacht", [0, 1])
    fit = fit_predict("yacht", settings, x, y, x_test, 1e-3, splits=[0, 1])
    assert np.isfinite(fit.mean).all()
    assert np.all(fit.var >= 1e-3)
    assert np.abs(fit.mean).max() < 10  # normalised targets lie within a few units


@pytest.mark.parametrize("method", ["mp", "adamw", "ivon"])
def test_run_selects_the_best_validation_variance_and_scores_in_original_units(method):
    overrides = {"epochs": 1} | ({"test_samples": 5} if method == "ivon" else {})
    run = run_uci("yacht", method, method_settings(method, overrides), [2, 5], Protocol(GRID))
    assert [r["split"] for r in run.records] == [2, 5]
    for record in run.records:
        scores = {float(v): s for v, s in record["validation_ll"].items() if s is not None}
        assert record["noise_var"] == max(scores, key=scores.get)
        assert record["noise_var"] in GRID
        assert record["n_train"] == 277
        assert record["n_test"] == 31
        assert record["epochs"] == 1
        assert record["train_seconds"] > 0
        k = record["split"]
        pred = run.predictions[k]
        data = load_uci("yacht", k)
        expected_y = data.y_test[:, 0].numpy() * data.metadata["target_std"]
        np.testing.assert_allclose(pred["y"], expected_y + data.metadata["target_mean"])
        assert record["metrics"] == split_metrics(pred["mean"], pred["var"], pred["y"])
        assert np.all(pred["var"] >= record["noise_var"] * data.metadata["target_std"] ** 2 * 0.999)
    assert math.isfinite(run.records[0]["metrics"]["ll"])


def test_validation_never_sees_the_test_rows(monkeypatch):
    """Every training and prediction of the selection uses the validation partition only."""
    from harness.uci import runs

    seen = []

    def spy(name, settings, x, y, x_eval, noise_var, *, splits, seed):
        seen.append((x.shape[1], x_eval.shape[1]))
        return _Fake(*x_eval.shape[:2], noise_var)

    monkeypatch.setattr(runs, "fit_predict", spy)
    run_uci("yacht", "mp", MPSettings(epochs=1), [0], Protocol(GRID))
    held = round(277 * 0.2)
    assert seen[: len(GRID)] == [(277 - held, held)] * len(GRID)
    assert seen[len(GRID) :] == [(277, 31)]


class _Fake:
    """A fit that predicts 0 with the noise variance, for counting calls."""

    def __init__(self, r, m, noise_var):
        self.mean = np.zeros((r, m))
        self.var = np.full((r, m), noise_var)
        self.seconds = 0.1
        self.epochs = 1


def test_settings_of_another_method_are_refused():
    with pytest.raises(ValueError, match="do not belong to method 'ivon'"):
        run_uci("yacht", "ivon", MPSettings(epochs=1), [0])


def test_bad_splits_are_refused():
    with pytest.raises(ValueError, match="distinct split indices"):
        run_uci("yacht", "mp", MPSettings(epochs=1), [1, 1])
    with pytest.raises(ValueError, match="invalid split 20"):
        run_uci("yacht", "mp", MPSettings(epochs=1), [20])


def test_saved_run_reads_back(tmp_path):
    run = run_uci("yacht", "adamw", method_settings("adamw", {"epochs": 1}), [0], Protocol(GRID))
    save_run(run, tmp_path / "runs.json", tmp_path / "predictions.npz")
    back = load_run(tmp_path / "runs.json")
    assert back["records"] == json.loads(json.dumps(run.records))
    assert back["settings"]["settings"]["lr"] == method_settings("adamw").lr
    arrays = np.load(tmp_path / "predictions.npz")
    np.testing.assert_array_equal(arrays["split0_mean"], run.predictions[0]["mean"])
    (tmp_path / "bad.json").write_text('{"name": "yacht"}')
    with pytest.raises(CorruptFileError, match="rerun its train_uci job"):
        load_run(tmp_path / "bad.json")


def test_a_diverging_batched_final_training_is_retrained_split_by_split(monkeypatch):
    from amp.trainer import DivergenceError
    from harness.uci import runs

    calls = []

    def diverges_together(name, settings, x, y, x_eval, noise_var, *, splits, seed):
        calls.append(list(splits))
        if x.shape[1] == 277 and (len(splits) > 1 or splits == [5]):  # final trainings
            raise DivergenceError("message not finite")
        return _Fake(*x_eval.shape[:2], noise_var)

    monkeypatch.setattr(runs, "fit_predict", diverges_together)
    protocol = Protocol((0.01,))
    with pytest.raises(DivergenceError, match=r"final training of splits \[5\]"):
        run_uci("yacht", "mp", MPSettings(epochs=1), [2, 5], protocol)
    assert calls[-3:] == [[2, 5], [2], [5]]  # together, then each alone

    calls.clear()
    monkeypatch.setattr(
        runs,
        "fit_predict",
        lambda *a, splits, **k: (
            diverges_together(*a, splits=splits, **k) if splits != [5] else _Fake(1, 31, a[5])
        ),
    )
    run = run_uci("yacht", "mp", MPSettings(epochs=1), [2, 5], protocol)
    assert [(r["split"], r["trained_alone"]) for r in run.records] == [(2, True), (5, True)]
