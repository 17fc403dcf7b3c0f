"""The injected faults of harness.gate_mutations, and (slow) that the gate catches each one."""

import subprocess
import sys

import pytest
import torch
from pipeline_harness import REPO, fashion_mnist_available

from amp import Network, Trainer, priors, specs
from amp.gaussian import NatGaussian
from amp.trainer import ema_beta
from baselines.models import build_model
from baselines.train import TrainConfig
from harness import gate_mutations as gm

LAYERS = (specs.Linear(4), specs.LeakyReLU(), specs.Linear(3), specs.Argmax())


def test_every_mutation_names_the_methods_it_trains():
    assert set(gm.MUTATIONS) == {
        "none",
        "no_cavity",
        "ema_off",
        "prior_var_x4",
        "mp_leak_0.3",
        "adamw_lr_x10",
    }
    for name, mutation in gm.MUTATIONS.items():
        assert mutation.methods, name
        assert set(mutation.methods) <= {"mp", "adamw", "ivon"}
    with pytest.raises(ValueError, match="invalid mutation: 'typo'"):
        gm.apply_mutation("typo")


def test_no_cavity_returns_the_marginal(monkeypatch):
    total = NatGaussian(torch.tensor([3.0]), torch.tensor([5.0]))
    stored = NatGaussian(torch.tensor([1.0]), torch.tensor([2.0]))
    assert Trainer._cavity(total, stored).rho.item() == pytest.approx(3.0)  # 5 - 2
    gm.apply_mutation("no_cavity", monkeypatch.setattr)
    assert Trainer._cavity(total, stored) is total


def test_ema_off_keeps_only_the_new_message(monkeypatch):
    import amp.trainer

    assert ema_beta(5) < 1.0
    gm.apply_mutation("ema_off", monkeypatch.setattr)
    assert [amp.trainer.ema_beta(e) for e in (1, 2, 10)] == [1.0, 1.0, 1.0]


def test_prior_variance_is_scaled_in_the_network(monkeypatch):
    before = priors.weight_prior_var(784, 256, post_leaky=True)
    net_before = Network(LAYERS, input_shape=(2,), seed=0)
    gm.apply_mutation("prior_var_x4", monkeypatch.setattr)
    assert priors.weight_prior_var(784, 256, post_leaky=True) == pytest.approx(4 * before)
    net_after = Network(LAYERS, input_shape=(2,), seed=0)
    for a, b in zip(net_before.weight_layers, net_after.weight_layers, strict=True):
        var_a, var_b = 1 / a.q_w.rho, 1 / b.q_w.rho
        torch.testing.assert_close(var_b, gm.PRIOR_VAR_FACTOR * var_a)


def test_leak_changes_in_mp_only(monkeypatch):
    gm.apply_mutation("mp_leak_0.3", monkeypatch.setattr)
    net = Network(LAYERS, input_shape=(2,), seed=0)
    leaks = [layer.leak for layer in net.layers if hasattr(layer, "leak")]
    assert leaks == [gm.MUTATED_LEAK]
    model = build_model(LAYERS, (2,))
    assert [m.negative_slope for m in model.modules() if isinstance(m, torch.nn.LeakyReLU)] == [
        LAYERS[1].leak
    ]


def test_adamw_learning_rate_x10(monkeypatch):
    before = TrainConfig(method="adamw").resolved_lr
    ivon_before = TrainConfig(method="ivon").resolved_lr
    gm.apply_mutation("adamw_lr_x10", monkeypatch.setattr)
    assert TrainConfig(method="adamw").resolved_lr == pytest.approx(10 * before)
    assert TrainConfig(method="ivon").resolved_lr == ivon_before


def test_evaluate_names_the_metric_with_the_largest_regression():
    reference = {
        "runs": {
            "d/a/mp": {
                "accuracy": {"value": 0.75, "tolerance": 0.01, "direction": "higher"},
                "nll": {"value": 0.80, "tolerance": 0.02, "direction": "lower"},
            },
            "d/a/adamw": {"accuracy": {"value": 0.7, "tolerance": 0.01, "direction": "higher"}},
        }
    }
    summaries = {
        "none": {"d/a/mp": {"accuracy": 0.75, "nll": 0.8}, "d/a/adamw": {"accuracy": 0.7}},
        "no_cavity": {"d/a/mp": {"accuracy": 0.73, "nll": 0.9}},  # 2 vs 5 tolerances
    }
    rows, ok = gm.evaluate(summaries, reference)
    assert ok
    assert rows[0][2] == "none (passed)"
    assert rows[1][:3] == ("no_cavity", "d/a/mp", "nll")
    assert rows[1][6] == "2 + 0"
    unchanged = {"d/a/mp": {"accuracy": 0.75, "nll": 0.8}}
    rows, missed = gm.evaluate({"no_cavity": unchanged}, reference)
    assert not missed
    assert rows[0][2].startswith("MISSED: ")
    drifting = {"runs": {"d/a/mp": {"nll": {**reference["runs"]["d/a/mp"]["nll"], "drift": 1e-3}}}}
    rows, caught = gm.evaluate({"ema_off": {"d/a/mp": {"nll": 0.798}}}, drifting)
    assert caught
    assert rows[0][2:] == ("nll", "0.8000", "0.7980", "0.0010 (drift)", "0 + 1")
    _, control = gm.evaluate({"none": {"d/a/mp": {"accuracy": 0.7, "nll": 0.8}}}, reference)
    assert not control


@pytest.mark.slow
def test_the_gate_catches_every_injected_fault():
    """CI configuration, each mutation trained apart: all fail the gate, the control passes."""
    if not fashion_mnist_available():
        pytest.skip("Fashion-MNIST is not installed (make data)")
    done = subprocess.run(
        [sys.executable, "-m", "harness.gate_mutations", "--jobs", "2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    print(done.stdout)  # the table, for the CI log  # noqa: T201
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    for name in gm.MUTATIONS:
        assert any(line.startswith(name) for line in done.stdout.splitlines()), name
