import math

import pytest
import torch

from amp import priors, specs
from amp.network import Network

# spec D, table "Resulting priors (σ_l, σ_p²)": (d_in, d_out, post_leaky, σ_l, σ_p²)
SPEC_TABLE = {
    "cifar conv1 (first)": (27, 32 * 30 * 30, False, 0.1925, 0.05556),
    "cifar conv2": (288, 32 * 28 * 28, True, 0.0589, 0.005342),
    "cifar conv3": (288, 64 * 12 * 12, True, 0.0589, 0.005342),
    "cifar conv4": (576, 64 * 10 * 10, True, 0.0417, 0.002679),
    "cifar fc 1600->512": (1600, 512, True, 0.01414, 0.001726),
    "cifar fc 512->10": (512, 10, True, 0.00618, 0.006426),
    "mnist 784->256 (first)": (784, 256, False, 0.0204, 0.001913),
    "mnist 256->256": (256, 256, True, 0.0625, 0.006005),
    "mnist 256->10": (256, 10, True, 0.01235, 0.01267),
    "toy 1->32 (first)": (1, 32, False, 1.0, 1.5),
    "toy 32->32": (32, 32, True, 0.1768, 0.04581),
    "toy 32->1": (32, 1, True, 0.03125, 0.09709),
}


@pytest.mark.parametrize("name", list(SPEC_TABLE))
def test_prior_table_of_the_spec(name):
    d_in, d_out, post_leaky, std, var = SPEC_TABLE[name]
    assert priors.prior_mean_std(d_in, d_out) == pytest.approx(std, rel=2e-3)
    assert priors.weight_prior_var(d_in, d_out, post_leaky=post_leaky) == pytest.approx(
        var, rel=2e-3
    )


def test_post_leaky_formula_uses_library_denominator():
    # (1.5 − b·min(1, d_out/d_in)) / (a·d_in + b), not priors_test.jl's d_in·(a + b)
    d_in, d_out = 256, 256
    expected = (1.5 - priors.POST_LEAKY_B) / (priors.POST_LEAKY_A * d_in + priors.POST_LEAKY_B)
    assert priors.weight_prior_var(d_in, d_out, post_leaky=True) == pytest.approx(expected)


def test_network_priors_match_the_layer_formulas():
    net = Network(specs.arch("conv890k"), (3, 32, 32), seed=0, dtype=torch.float32)
    layers = net.weight_layers
    expected = [row for key, row in SPEC_TABLE.items() if key.startswith("cifar")]
    for layer, (_, _, post_leaky, std, var) in zip(layers, expected, strict=True):
        assert layer.first == (not post_leaky)
        assert torch.allclose(layer.prior_w.var, torch.tensor(var), rtol=2e-3)
        assert layer.prior_w.mean.std().item() == pytest.approx(std, rel=0.1)
        assert torch.allclose(layer.prior_b.var, torch.tensor(priors.BIAS_PRIOR_VAR))
        assert torch.all(layer.prior_b.mean == 0)


def test_prior_means_are_seeded_and_random():
    a = Network(specs.arch("mlp"), (1, 28, 28), seed=1).weight_layers[1].prior_w.mean
    b = Network(specs.arch("mlp"), (1, 28, 28), seed=1).weight_layers[1].prior_w.mean
    c = Network(specs.arch("mlp"), (1, 28, 28), seed=2).weight_layers[1].prior_w.mean
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # i.i.d. N(0, σ_l²): the sample standard deviation matches σ_l
    assert a.std().item() == pytest.approx(1 / math.sqrt(256), rel=0.02)


def test_explicit_prior_variance_overrides_the_formula():
    net = Network([specs.Linear(3, prior_var=0.7), specs.Regression(0.1)], (2,), seed=0)
    assert torch.allclose(net.weight_layers[0].prior_w.var, torch.tensor(0.7, dtype=torch.float64))


def test_negative_prior_variance_is_rejected():
    with pytest.raises(ValueError, match="prior_var"):
        specs.Linear(3, prior_var=-1.0)
