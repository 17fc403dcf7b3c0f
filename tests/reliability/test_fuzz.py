"""Property-based tests: metrics and whole message-passing networks on random input.

Metrics: random valid probability matrices (peaked, flat, one-hot and tied rows) and labels,
and random Gaussian predictives over wide ranges; every metric is finite and in its range.
Networks: random small specs (Linear, LeakyReLU, Flatten, Conv2d, MaxPool2d; Argmax or
Regression), random inputs up to the documented bound :data:`harness.data.INPUT_ABS_LIMIT`, one to
three epochs of :meth:`Trainer.fit` under the ``sequential`` and ``scaled`` schedules, then
:meth:`Network.predict`: no NaN or infinity and no negative precision in any marginal, stored
batch message or per-example message. Beyond the bound, training may stop, but only with a
:class:`~amp.trainer.DivergenceError`.
"""

import math
import re

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amp import specs
from amp.gaussian import NatGaussian
from amp.network import Network
from amp.trainer import DivergenceError, Trainer
from harness import metrics
from harness.data import INPUT_ABS_LIMIT

SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
NET_SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


# ------------------------------------------------------------------------------- metrics
@st.composite
def classification(draw):
    """Probabilities ``(N, K)`` with rows of several kinds, labels, and OOD probabilities."""
    k = draw(st.integers(2, 12))
    n = draw(st.integers(20, 60))  # ece_mv needs N >= 20 (it is NaN below, by definition)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    def rows(count):
        kinds = rng.integers(0, 5, count)
        alpha = 10.0 ** rng.uniform(-2, 2, (count, 1))
        p = rng.dirichlet(np.ones(k), count) ** (1 / alpha)  # peaked to nearly flat
        p[kinds == 1] = np.eye(k)[rng.integers(0, k, (kinds == 1).sum())]  # one-hot
        p[kinds == 2] = 1.0 / k  # ties everywhere
        p[kinds == 3, 0] = 1e-300  # denormal-sized entries
        p /= p.sum(axis=1, keepdims=True)
        if draw(st.booleans()):
            p = p.astype(np.float32)  # float32 rows sum to 1 only up to rounding
        return p

    labels = rng.integers(0, k, n)
    return rows(n), labels, rows(draw(st.integers(1, 40)))


@SETTINGS
@given(classification())
def test_classification_metrics_are_finite_and_in_range(case):
    probs, labels, ood = case
    k = probs.shape[1]
    out = metrics.classification_metrics(probs, labels, ood)
    assert all(math.isfinite(v) for v in out.values()), out
    for key in ("accuracy", "top5_accuracy", "ece_15", "ece_20", "ood_auroc", "ood_aupr"):
        assert 0.0 <= out[key] <= 1.0, (key, out[key])
    assert 0.0 <= out["ood_fpr95"] <= 1.0
    assert out["top5_accuracy"] >= out["accuracy"]
    assert 0.0 <= out["nll"] <= -math.log(metrics.NLL_FLOOR) + 1e-12
    assert 0.0 <= out["brier"] <= 2.0 + 1e-12
    assert 0.0 <= out["ece_mv"] <= 2.0 + 1e-12
    assert -1e-12 <= out["entropy_mean"] <= math.log(k) + 1e-9


@SETTINGS
@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 50),
    st.integers(1, 50),
    st.sampled_from([1e-6, 1.0, 1e6]),
    st.booleans(),
)
def test_ood_scores_are_probabilities_even_with_ties(seed, n_neg, n_pos, scale, discrete):
    rng = np.random.default_rng(seed)
    neg, pos = rng.normal(0, scale, n_neg), rng.normal(scale, scale, n_pos)
    if discrete:  # many exact ties
        neg, pos = np.round(neg / scale), np.round(pos / scale)
    for value in (
        metrics.auroc(neg, pos),
        metrics.average_precision(neg, pos),
        metrics.fpr_at_tpr(neg, pos),
    ):
        assert 0.0 <= value <= 1.0
    assert metrics.auroc(neg, pos) == pytest.approx(1.0 - metrics.auroc(pos, neg))


@SETTINGS
@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 40),
    st.sampled_from([None, 1, 3]),
    st.floats(-6, 6),
    st.floats(-12, 12),
)
def test_regression_metrics_are_finite_and_in_range(seed, n, d, log_scale, log_var):
    rng = np.random.default_rng(seed)
    shape = (n,) if d is None else (n, d)
    scale = 10.0**log_scale
    mean = rng.normal(0, scale, shape)
    var = 10.0 ** (log_var + rng.uniform(-1, 1, shape))
    targets = mean + rng.normal(0, scale, shape) * rng.choice([0.0, 1.0, 100.0], shape)
    out = metrics.regression_metrics(mean, var, targets)
    assert all(math.isfinite(v) for v in out.values()), out
    assert out["rmse"] >= 0.0
    assert out["crps"] >= 0.0
    assert 0.0 <= out["picp_1"] <= out["picp_2"] <= out["picp_3"] <= 1.0
    assert 0.0 < out["width_1"] < out["width_2"] < out["width_3"]


# ------------------------------------------------------------------------------ networks
@st.composite
def networks(draw):
    """Layer specs, input shape, task and input scale of a small random network."""
    task = draw(st.sampled_from(["classification", "regression"]))
    conv = draw(st.booleans())
    layers = []
    if conv:
        channels, side = draw(st.integers(1, 2)), draw(st.integers(4, 6))
        shape = (channels, side, side)
        layers.append(
            specs.Conv2d(
                draw(st.integers(1, 3)),
                draw(st.sampled_from([1, 3])),
                padding=draw(st.integers(0, 1)),
                padding_mode=draw(st.sampled_from(["symmetric", "zeros"])),
            )
        )
        layers.append(specs.LeakyReLU(draw(st.sampled_from([0.1, 0.5, 1.0]))))
        if draw(st.booleans()):
            layers.append(specs.MaxPool2d(2))
        layers.append(specs.Flatten())
    else:
        shape = (draw(st.integers(1, 4)),)
    for _ in range(draw(st.integers(0, 2))):
        layers += [specs.Linear(draw(st.integers(1, 6))), specs.LeakyReLU()]
    if task == "classification":
        layers += [specs.Linear(draw(st.integers(2, 4))), specs.Argmax(draw(st.booleans()))]
    else:
        noise = draw(st.sampled_from([1e-3, 0.05**2, 1.0]))
        layers += [specs.Linear(draw(st.integers(1, 2))), specs.Regression(noise)]
    return tuple(layers), shape, task


def natural(value):
    """Every NatGaussian inside a layer's attributes (marginals, cavities, messages)."""
    for name, item in vars(value).items():
        if isinstance(item, NatGaussian):
            yield name, item


def assert_proper(where, g):
    assert torch.isfinite(g.tau).all(), f"{where}: non-finite tau"
    assert torch.isfinite(g.rho).all(), f"{where}: non-finite precision"
    assert (g.rho >= 0).all(), f"{where}: negative precision {float(g.rho.min())}"


def assert_state_is_proper(net, trainer):
    for i, layer in enumerate(net.layers):
        for name, g in natural(layer):
            assert_proper(f"layer {i} ({type(layer).__name__}).{name}", g)
    for i, ((sw, sb), (qw, qb)) in enumerate(zip(trainer.stores, trainer.totals, strict=True)):
        assert_proper(f"Q_w of weight layer {i}", qw)
        assert_proper(f"Q_b of weight layer {i}", qb)
        for batch in range(trainer.num_batches):
            assert_proper(f"stored w message {batch} of weight layer {i}", sw.get(batch))
            assert_proper(f"stored b message {batch} of weight layer {i}", sb.get(batch))


def problem(net_spec, dtype, n, scale, seed):
    """Inputs with ``max |x| = scale`` exactly, targets, and a network."""
    layers, shape, task = net_spec
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=g, dtype=dtype)
    x = x / x.abs().max() * scale
    k = layers[-2].out_features
    if task == "classification":
        y = torch.randint(0, k, (n,), generator=g)
    else:
        y = torch.randn(n, k, generator=g, dtype=dtype) * scale
    return Network(layers, shape, seed=seed % 1000, dtype=dtype), x, y


@NET_SETTINGS
@given(
    networks(),
    st.sampled_from(["sequential", "scaled"]),
    st.sampled_from([torch.float64, torch.float32]),
    st.integers(4, 24),
    st.integers(1, 8),
    st.integers(2, 4),
    st.integers(1, 3),
    st.sampled_from([1e-3, 1.0, 30.0, INPUT_ABS_LIMIT]),
    st.integers(0, 2**31 - 1),
)
def test_training_and_prediction_never_produce_nan_or_negative_precision(
    net_spec, schedule, dtype, n, batch_size, group_size, epochs, scale, seed
):
    """Inputs up to the documented bound (harness.data.INPUT_ABS_LIMIT); epoch 3 sweeps twice."""
    net, x, y = problem(net_spec, dtype, n, scale, seed)
    trainer = Trainer(net, batch_size, schedule=schedule, group_size=group_size, seed=seed)
    trainer.fit(x, y, epochs=epochs)
    assert_state_is_proper(net, trainer)

    shape = net.input_shape
    x_new = torch.randn(5, *shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    out = net.predict(x_new * scale)
    if net.task == "classification":
        assert torch.isfinite(out).all()
        assert ((out >= 0) & (out <= 1)).all()
        assert torch.allclose(out.sum(-1), torch.ones(5, dtype=dtype), atol=1e-4)
    else:
        mean, var = out
        assert torch.isfinite(mean).all()
        assert torch.isfinite(var).all()
        assert (var > 0).all()


@NET_SETTINGS
@given(
    networks(),
    st.sampled_from(["sequential", "scaled"]),
    st.integers(4, 16),
    st.integers(1, 4),
    st.sampled_from([1e4, 1e5, 1e7]),
    st.integers(0, 2**31 - 1),
)
def test_inputs_beyond_the_bound_fail_only_with_a_divergence_error(
    net_spec, schedule, n, batch_size, scale, seed
):
    """Unnormalised float32 inputs either train properly or stop with DivergenceError."""
    net, x, y = problem(net_spec, torch.float32, n, scale, seed)
    trainer = Trainer(net, batch_size, schedule=schedule, group_size=3, seed=seed)
    message = None
    try:
        trainer.fit(x, y, epochs=2)
    except DivergenceError as err:
        message = str(err)
    if message is None:
        assert_state_is_proper(net, trainer)
    else:
        assert re.search(r"at epoch [12], batch \d+", message)
        assert "normalise them" in message


# ------------------------------------------------------------------- scaled group sites
@pytest.mark.parametrize("batch_size", [7, 14, 39])
def test_scaled_schedule_with_a_last_group_of_one_keeps_its_messages(batch_size):
    """Batches of 3k + 1 examples in groups of 3 once crashed (or mixed up sites) in epoch 3."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(39, 2, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (39,), generator=g)
    net = Network((specs.Linear(3), specs.LeakyReLU(), specs.Linear(2), specs.Argmax()), (2,))
    trainer = Trainer(net, batch_size, schedule="scaled", group_size=3, seed=1)
    trainer.fit(x, y, epochs=3)
    assert_state_is_proper(net, trainer)


def test_scaled_schedule_with_groups_of_one_is_the_sequential_schedule():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 2, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (16,), generator=g)
    layers = (specs.Linear(3), specs.LeakyReLU(), specs.Linear(2), specs.Argmax(False))
    out = {}
    for schedule in ("sequential", "scaled"):
        net = Network(layers, (2,), seed=0)
        Trainer(net, 8, schedule=schedule, group_size=1, seed=1).fit(x, y, epochs=3)
        out[schedule] = net.predict(x)
    assert torch.equal(out["sequential"], out["scaled"])
