import math

import pytest
import torch
from problems import linear_regression_data, shifted_correlated_regression

from amp import specs
from amp.io import CorruptFileError
from amp.network import Network
from amp.trainer import DivergenceError, Trainer, default_iterations, ema_beta
from harness.data import make_sine, sine_function

F64 = torch.float64


def exact_posterior(net, x, y, noise_var):
    """Closed-form Bayesian linear regression with the network's (random) prior."""
    layer = net.weight_layers[0]
    prior_mean = torch.cat([layer.prior_w.mean[:, 0], layer.prior_b.mean])
    prior_var = torch.cat([layer.prior_w.var[:, 0], layer.prior_b.var])
    design = torch.cat([x, torch.ones(len(x), 1, dtype=F64)], 1)
    precision = torch.diag(1 / prior_var) + design.T @ design / noise_var
    cov = torch.linalg.inv(precision)
    mean = cov @ (prior_mean / prior_var + design.T @ y[:, 0] / noise_var)
    return mean, cov


def rmse(net, x, y):
    mean, _ = net.predict(x)
    return float(((mean - y) ** 2).mean().sqrt())


# ------------------------------------------------------------------------------ schedule rules
def test_ema_and_iteration_schedules_of_the_reference():
    assert ema_beta(1) == 1.0
    assert [round(ema_beta(e), 3) for e in (2, 3, 4, 5)] == [0.974, 0.955, 0.941, 0.930]
    assert ema_beta(100) == pytest.approx(0.9)
    assert [default_iterations(e) for e in range(1, 8)] == [1, 1, 2, 2, 3, 3, 4]


# ----------------------------------------------------------------------------------- exactness
@pytest.mark.parametrize(
    ("schedule", "batch_size", "epochs", "iterations", "atol"),
    [
        ("sequential", 40, 1, 300, 1e-12),
        ("grouped", 40, 1, 300, 1e-12),
        ("grouped", 20, 80, 30, 1e-9),
    ],
)
def test_linear_gaussian_means_equal_bayesian_linear_regression(
    schedule, batch_size, epochs, iterations, atol
):
    # A converged batch visit is exact EP, whose means are exact for a linear-Gaussian model.
    # (Every visit restarts its per-example messages, so only enough sweeps per visit converge
    # to the exact fixed point; with several batches the store converges over the epochs.)
    x, y = linear_regression_data()
    net = Network([specs.Linear(1), specs.Regression(0.09)], (3,), seed=3)
    mean, _ = exact_posterior(net, x, y, 0.09)
    trainer = Trainer(net, batch_size, schedule=schedule, group_size=5, final_marginal="store")
    trainer.fit(x, y, epochs=epochs, iterations=iterations)
    layer = net.weight_layers[0]
    got = torch.cat([layer.q_w.mean[:, 0], layer.q_b.mean])
    assert torch.allclose(got, mean, rtol=0, atol=atol)


def test_single_unknown_gets_the_exact_posterior_variance():
    # one input, the bias pinned by a near-point-mass prior: one unknown, so EP is exact
    x, y = linear_regression_data(n=30, d=1)
    net = Network([specs.Linear(1), specs.Regression(0.09)], (1,), seed=0)
    layer = net.weight_layers[0]
    layer.prior_b = layer.prior_b.__class__(torch.zeros(1, dtype=F64), torch.full((1,), 1e12))
    prior_mean, prior_var = layer.prior_w.mean[0, 0], layer.prior_w.var[0, 0]
    trainer = Trainer(net, 10, schedule="sequential", final_marginal="store")
    trainer.fit(x, y, epochs=5, iterations=3)
    post_prec = 1 / prior_var + (x[:, 0] ** 2).sum() / 0.09
    post_mean = (prior_mean / prior_var + (x[:, 0] * y[:, 0]).sum() / 0.09) / post_prec
    assert layer.q_w.var[0, 0].item() == pytest.approx(1 / post_prec.item(), rel=1e-9)
    assert layer.q_w.mean[0, 0].item() == pytest.approx(post_mean.item(), rel=1e-7)


# ------------------------------------------------------------------------------ the store
class CheckedTrainer(Trainer):
    """Checks after every batch visit that each marginal equals prior × Π stored messages."""

    worst = 0.0

    def _visit(self, *args):
        super()._visit(*args)
        for layer, (sw, sb), (qw, qb) in zip(
            self.net.weight_layers, self.stores, self.totals, strict=True
        ):
            for prior, store, total in ((layer.prior_w, sw, qw), (layer.prior_b, sb, qb)):
                expected = prior.mul(store.total())
                scale = expected.rho.abs().max().item()
                CheckedTrainer.worst = max(
                    CheckedTrainer.worst, total.max_abs_diff(expected) / scale
                )


def test_marginal_is_prior_times_stored_batch_messages_after_every_visit():
    data = make_sine(seed=1)
    net = Network(specs.arch("toy_regression"), (1,), seed=0)
    trainer = CheckedTrainer(net, 50, schedule="grouped")
    trainer.fit(data.x_train, data.y_train, epochs=4)
    assert CheckedTrainer.worst < 1e-12


class DoubleCountingTrainer(Trainer):
    """The deliberately wrong variant: every visit treats the batch as new data.

    No cavity (the batch's old message stays in the marginal) and the new message is multiplied
    in on top of the old one instead of replacing it.
    """

    @staticmethod
    def _cavity(total, stored):
        return total

    @staticmethod
    def _store_batch_message(store, total, batch, new, beta):
        total.tau.add_(new.tau)
        total.rho.add_(new.rho)
        store.set(batch, store.get(batch).mul(new))


def test_revisiting_data_does_not_shrink_the_posterior_double_counting_does():
    x, y = linear_regression_data(n=100, d=3)

    def variance_after(trainer_class, epochs):
        net = Network([specs.Linear(1), specs.Regression(0.09)], (3,), seed=0)
        trainer_class(net, 20, schedule="sequential", iterations=2, final_marginal="store").fit(
            x, y, epochs=epochs
        )
        return net.weight_layers[0].q_w.var[:, 0]

    ours = variance_after(Trainer, 5) / variance_after(Trainer, 50)
    wrong = variance_after(DoubleCountingTrainer, 5) / variance_after(DoubleCountingTrainer, 50)
    assert torch.allclose(ours, torch.ones(3, dtype=F64), rtol=1e-3)  # converged
    assert torch.all(wrong > 5)  # keeps shrinking roughly like 1/epochs


# --------------------------------------------------------------------------------- schedules
def test_grouped_matches_sequential_and_parallel_diverges_on_correlated_inputs():
    x, y, x_test, y_test = shifted_correlated_regression()
    errors = {}
    for schedule in ("sequential", "grouped"):
        net = Network([specs.Linear(1), specs.Regression(0.25)], (10,), seed=0)
        Trainer(net, 128, schedule=schedule).fit(x, y, epochs=12)
        mean, var = net.predict(x_test)
        nll = (0.5 * torch.log(2 * math.pi * var) + 0.5 * (mean - y_test) ** 2 / var).mean()
        errors[schedule] = (rmse(net, x_test, y_test), float(nll))
    assert errors["grouped"][0] == pytest.approx(errors["sequential"][0], rel=0.05)
    assert errors["grouped"][1] == pytest.approx(errors["sequential"][1], rel=0.05)
    # the rejected fully parallel (Jacobi) schedule overshoots by the Gram matrix's top
    # eigenvalue (about 4.6 here) and runs away
    net = Network([specs.Linear(1), specs.Regression(0.25)], (10,), seed=0)
    Trainer(net, 128, schedule="parallel").fit(x, y, epochs=12)
    assert rmse(net, x_test, y_test) > 1e3 * errors["sequential"][0]


def test_sine_regression_fits_inside_and_widens_outside_the_data():
    data = make_sine()
    net = Network(specs.arch("toy_regression"), (1,), seed=0)
    Trainer(net, 200).fit(data.x_train, data.y_train, epochs=1, iterations=100)
    inside = torch.linspace(-0.45, 0.45, 50, dtype=F64)[:, None]
    mean, var = net.predict(inside)
    assert float(((mean - sine_function(inside)) ** 2).mean().sqrt()) < 0.08
    _, var_far = net.predict(torch.tensor([[-5.0], [5.0]], dtype=F64))
    assert torch.all(var_far > 20 * var.max())


# ------------------------------------------------------------------------------ persistence
@pytest.mark.parametrize("store", ["memory", "disk"])
def test_resumed_run_equals_uninterrupted_run(tmp_path, store):
    data = make_sine(seed=2)
    store_dir = (tmp_path / "store") if store == "disk" else None

    def trainer():
        net = Network(specs.arch("toy_regression"), (1,), seed=0)
        return Trainer(net, 50, seed=5, store_dir=store_dir)

    full = trainer().fit(data.x_train, data.y_train, epochs=4)
    first = trainer().fit(data.x_train, data.y_train, epochs=2, checkpoint=tmp_path / "ck.pt")
    del first
    resumed = Trainer.load(tmp_path / "ck.pt", store_dir=store_dir)
    assert resumed.epoch == 2
    resumed.fit(data.x_train, data.y_train, epochs=2)
    x = torch.linspace(-3, 3, 31, dtype=F64)[:, None]
    for a, b in zip(full.net.predict(x), resumed.net.predict(x), strict=True):
        assert torch.equal(a, b)


def test_truncated_checkpoint_is_reported(tmp_path):
    data = make_sine()
    net = Network(specs.arch("toy_regression"), (1,), seed=0)
    Trainer(net, 100).fit(data.x_train, data.y_train, epochs=1, checkpoint=tmp_path / "ck.pt")
    raw = (tmp_path / "ck.pt").read_bytes()
    (tmp_path / "ck.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CorruptFileError, match="corrupt or truncated"):
        Trainer.load(tmp_path / "ck.pt")


def test_float32_store_and_disk_store_agree_with_the_default(tmp_path):
    data = make_sine(seed=3)
    results = {}
    for name, kwargs in {
        "memory64": {},
        "disk64": {"store_dir": tmp_path / "s"},
        "memory32": {"store_dtype": torch.float32},
    }.items():
        net = Network(specs.arch("toy_regression"), (1,), seed=0)
        Trainer(net, 50, **kwargs).fit(data.x_train, data.y_train, epochs=3)
        results[name] = net.predict(data.x_test)[0]
    assert torch.equal(results["memory64"], results["disk64"])
    assert torch.allclose(results["memory64"], results["memory32"], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------- bad input
def test_bad_training_data_gets_clear_errors():
    net = Network(specs.arch("toy_regression"), (1,), seed=0)
    trainer = Trainer(net, 10)
    x = torch.zeros(20, 1, dtype=F64)
    with pytest.raises(ValueError, match="NaN or infinite"):
        trainer.fit(torch.full((20, 1), math.nan, dtype=F64), x)
    with pytest.raises(ValueError, match="per example"):
        trainer.fit(torch.zeros(20, 2, dtype=F64), x)
    with pytest.raises(ValueError, match="20 inputs but 19 targets"):
        trainer.fit(x, x[:19])
    classifier = Network([specs.Linear(3), specs.Argmax()], (1,), seed=0)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        Trainer(classifier, 10).fit(x, torch.full((20,), 3))
    trainer.fit(x, x, epochs=1)
    with pytest.raises(ValueError, match="create a new Trainer"):
        trainer.fit(x[:10], x[:10])


def test_non_finite_messages_stop_training_with_layer_epoch_and_batch(tmp_path):
    data = make_sine()
    net = Network(specs.arch("toy_regression"), (1,), seed=0)
    trainer = Trainer(net, 50)
    trainer.fit(data.x_train, data.y_train, epochs=1, checkpoint=tmp_path / "ck.pt")
    saved = (tmp_path / "ck.pt").read_bytes()
    trainer.totals[1][0].tau[0, 0] = math.nan  # injected bad marginal of weight layer 1
    with pytest.raises(DivergenceError, match=r"weight layer 1 .* epoch 2, batch \d+"):
        trainer.fit(data.x_train, data.y_train, epochs=1, checkpoint=tmp_path / "ck.pt")
    assert (tmp_path / "ck.pt").read_bytes() == saved  # the last good checkpoint is kept


def test_invalid_trainer_arguments():
    net = Network(specs.arch("toy_regression"), (1,), seed=0)
    with pytest.raises(ValueError, match="batch_size"):
        Trainer(net, 0)
    with pytest.raises(ValueError, match="'jacobi' is not a valid Schedule"):
        Trainer(net, 10, schedule="jacobi")
    with pytest.raises(ValueError, match="iterations"):
        Trainer(net, 10, iterations=0).fit(torch.zeros(4, 1, dtype=F64), torch.zeros(4, 1))
