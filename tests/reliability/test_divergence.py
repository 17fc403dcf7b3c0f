"""A NaN or infinity during training stops the run clearly and keeps the last good checkpoint.

MP: a non-finite value injected into a weight marginal or a stored batch message at epoch 2.
AdamW and IVON: the training loss of the first step of epoch 2 multiplied by NaN or infinity.
Library level through ``run_mp`` / ``run_baseline``; pipeline level through the training
scripts of the workflow (slow), whose log must carry the message.
"""

import importlib
import math
import re

import pytest
import torch
from reliability_harness import BATCH, STEPS_PER_EPOCH, run_script

from amp.io import load_checkpoint
from amp.trainer import DivergenceError, Trainer
from baselines.train import DivergenceError as BaselineDivergenceError
from harness.data import make_sine
from harness.runs.baseline import BaselineConfig, run_baseline
from harness.runs.mp import MPConfig, run_mp

baseline_train = importlib.import_module("baselines.train")  # the package exports `train`
VALUES = {"nan": math.nan, "inf": math.inf}


def poison_mp(monkeypatch, where, value, epoch=2):
    """Put ``value`` into a marginal (weight layer 1) or a stored message (layer 0)."""
    visit = Trainer._visit

    def poisoned(self, batch, *args):
        if self.epoch + 1 == epoch:
            if where == "marginal":
                self.totals[1][0].tau[0, 0] = value
            else:
                stored = self.stores[0][0].get(batch)
                stored.rho[0, 0] = value
                self.stores[0][0].set(batch, stored)
        return visit(self, batch, *args)

    monkeypatch.setattr(Trainer, "_visit", poisoned)


def poison_loss(monkeypatch, value, step):
    real, count = baseline_train._train_step, [0]

    def poisoned(model, optimizer, loss_fn, *args):
        count[0] += 1
        if count[0] == step:
            return real(model, optimizer, lambda *a: loss_fn(*a) * value, *args)
        return real(model, optimizer, loss_fn, *args)

    monkeypatch.setattr(baseline_train, "_train_step", poisoned)


@pytest.mark.parametrize("value", ["nan", "inf"])
@pytest.mark.parametrize(("where", "layer"), [("marginal", 1), ("stored message", 0)])
def test_mp_stops_naming_layer_epoch_batch_and_keeps_the_checkpoint(
    where, layer, value, tmp_path, monkeypatch
):
    data = make_sine(seed=1)
    ck = tmp_path / "mp.pt"
    config = MPConfig(epochs=2, batch_size=40)
    poison_mp(monkeypatch, where, VALUES[value])
    with pytest.raises(DivergenceError) as error:
        run_mp(data, "toy_regression", config, checkpoint=ck)
    message = str(error.value)
    assert re.search(rf"weight layer {layer} \(Linear\(.*\)\) at epoch 2, batch \d+", message)
    assert f"the checkpoint of epoch 1 is kept at {ck}" in message
    assert "normalise" in message
    saved = Trainer.load(ck)
    assert saved.epoch == 1
    for layer_ in saved.net.weight_layers:
        for marginal in (layer_.q_w, layer_.q_b):
            assert torch.isfinite(marginal.tau).all()
            assert (marginal.rho > 0).all()
    monkeypatch.undo()
    resumed = run_mp(data, "toy_regression", config, checkpoint=ck)  # the fault is gone
    assert resumed.metadata["history"][0] == saved.history[0]
    assert len(resumed.metadata["history"]) == 2


def test_mp_divergence_in_the_first_epoch_says_no_checkpoint_exists(tmp_path, monkeypatch):
    poison_mp(monkeypatch, "marginal", math.nan, epoch=1)
    with pytest.raises(DivergenceError, match="epoch 1, batch .*no checkpoint was written"):
        run_mp(make_sine(seed=1), "toy_regression", MPConfig(epochs=2), checkpoint=tmp_path / "c")
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("value", ["nan", "inf"])
@pytest.mark.parametrize("method", ["adamw", "ivon"])
def test_baseline_stops_naming_epoch_batch_and_keeps_the_checkpoint(
    method, value, tmp_path, monkeypatch
):
    data = make_sine(seed=1, dtype=torch.float32)
    ck = tmp_path / f"{method}.pt"
    batches = math.ceil(len(data.x_train) / BATCH)
    poison_loss(monkeypatch, VALUES[value], step=batches + 1)
    config = BaselineConfig(epochs=3, batch_size=BATCH)
    with pytest.raises(BaselineDivergenceError) as error:
        run_baseline(data, "toy_regression", method, config, checkpoint=ck)
    message = str(error.value)
    assert f"{method} diverged: loss {value} at epoch 2, batch 1/{batches}" in message
    assert f"checkpoint of epoch 1 kept at {ck}" in message
    state = load_checkpoint(ck)
    assert state["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in state["model"].values())


# --------------------------------------------------------------------------- pipeline level
@pytest.mark.slow
@pytest.mark.parametrize("method", ["mp", "adamw", "ivon"])
def test_training_script_fails_with_the_message_in_its_log(method, tmp_path):
    result = run_script(method, tmp_path, "--inject", "nan", "2")
    assert result.returncode != 0
    log = (tmp_path / f"{method}.log").read_text()
    state = tmp_path / method / "state" / "checkpoint.pt"
    if method == "mp":
        assert re.search(r"DivergenceError: non-finite messages in weight layer 1 .* epoch 2,", log)
        assert f"the checkpoint of epoch 1 is kept at {state}" in log
        saved = Trainer.load(state)
        assert saved.epoch == 1
        assert all(torch.isfinite(layer.q_w.tau).all() for layer in saved.net.weight_layers)
    else:
        assert f"{method} diverged: loss nan at epoch 2, batch 1/{STEPS_PER_EPOCH}" in log
        assert f"checkpoint of epoch 1 kept at {state}" in log
        assert load_checkpoint(state)["epoch"] == 1
    assert (state.parent / "identity.json").exists()
    assert not (tmp_path / method / "predictions.npz").exists()
    assert not (tmp_path / method / "model.pt").exists()
