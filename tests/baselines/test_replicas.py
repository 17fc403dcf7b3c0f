from __future__ import annotations

import math

import ivon
import numpy as np
import pytest
import torch

from amp import specs
from baselines.models import build_model
from baselines.predict import (
    predict_probs,
    predict_probs_ivon_bma,
    predict_regression,
    predict_regression_ivon_bma,
)
from baselines.replicas import ReplicatedSequential, stack_models, unstack_model
from baselines.train import TrainConfig, _stream_seeds, train

DTYPES = [torch.float32, torch.float64]
NOISE_VAR = 0.01
REGRESSOR = (
    specs.Linear(8),
    specs.LeakyReLU(),
    specs.Linear(8),
    specs.LeakyReLU(0.2),
    specs.Linear(2),
    specs.Regression(NOISE_VAR),
)
CLASSIFIER = (specs.Linear(8), specs.LeakyReLU(), specs.Linear(3), specs.Argmax())
CONV_NET = (
    specs.Conv2d(3, 3, padding=1, padding_mode="symmetric"),
    specs.LeakyReLU(),
    specs.MaxPool2d(2),  # 5x5 -> 2x2: the incomplete window is dropped
    specs.Conv2d(4, 2, padding=1),
    specs.LeakyReLU(),
    specs.Flatten(),
    specs.Linear(3),
    specs.Softmax(),
)
FORWARD_TOL = {torch.float32: 1e-5, torch.float64: 1e-12}
TRAIN_TOL = {torch.float32: 2e-4, torch.float64: 1e-9}


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _data(n=24, r=None, dtype=torch.float64, seed=0):
    g = _generator(seed)
    lead = (n,) if r is None else (r, n)
    x = torch.rand(*lead, 3, generator=g, dtype=dtype) * 2 - 1
    y = torch.stack([torch.sin(3 * x[..., 0]), x[..., 1] * x[..., 2]], dim=-1)
    return x, y + 0.1 * torch.randn(y.shape, generator=g, dtype=dtype)


def _config(method, **kwargs):
    defaults = {"epochs": 3, "batch_size": 10, "progress": False, "device": "cpu", "seed": 5}
    return TrainConfig(method=method, **(defaults | kwargs))


def _singles(layers, shape, r, seed, dtype=torch.float64):
    g = _generator(seed)
    return [build_model(layers, shape, generator=g, dtype=dtype) for _ in range(r)]


# ---- the replicated module ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("layers", "shape"), [(REGRESSOR, (3,)), (CONV_NET, (2, 5, 5))])
def test_forward_equals_separate_networks(layers, shape, dtype):
    singles = _singles(layers, shape, 4, seed=1, dtype=dtype)
    model = build_model(layers, shape, generator=_generator(1), dtype=dtype, replicas=4)
    assert isinstance(model, ReplicatedSequential)
    shared = torch.randn(5, *shape, generator=_generator(2), dtype=dtype)
    own = torch.randn(4, 5, *shape, generator=_generator(3), dtype=dtype)
    out_shared, out_own = model(shared), model(own)
    assert out_shared.shape == out_own.shape == (4, 5, specs.output_shapes(layers, shape)[-1][0])
    assert out_shared.dtype == dtype
    for r, single in enumerate(singles):
        tol = FORWARD_TOL[dtype]
        torch.testing.assert_close(out_shared[r], single(shared), rtol=tol, atol=tol)
        torch.testing.assert_close(out_own[r], single(own[r]), rtol=tol, atol=tol)


@pytest.mark.parametrize(("layers", "shape"), [(REGRESSOR, (3,)), (CONV_NET, (2, 5, 5))])
def test_network_r_is_the_rth_successive_single_build(layers, shape):
    singles = _singles(layers, shape, 3, seed=7, dtype=torch.float32)
    state = torch.get_rng_state()
    model = build_model(layers, shape, generator=_generator(7), replicas=3)
    assert torch.equal(torch.get_rng_state(), state), "global random state was touched"
    for r, single in enumerate(singles):
        copy = unstack_model(model, r)
        assert type(copy) is torch.nn.Sequential
        assert [type(m) for m in copy] == [type(m) for m in single]
        for (name, p), (name_ref, q) in zip(
            copy.named_parameters(), single.named_parameters(), strict=True
        ):
            assert name == name_ref
            assert torch.equal(p, q)
    # different networks get different draws from the same (PyTorch default) distribution
    weights = next(model.parameters()).detach()
    assert not torch.equal(weights[0], weights[1])
    assert weights.abs().max() <= 1 / math.sqrt(weights[0, 0].numel())


def test_stack_and_unstack_round_trip():
    singles = _singles(REGRESSOR, (3,), 3, seed=2)
    model = stack_models(singles, (3,))
    assert model.replicas == 3
    assert model[0].weight.shape == (3, 8, 3)
    assert set(model.state_dict()) == set(singles[0].state_dict())
    with torch.no_grad():
        model[0].weight[1].zero_()  # the stack holds copies
    assert singles[1][0].weight.abs().sum() > 0
    assert torch.equal(unstack_model(model, 2)[2].weight, singles[2][2].weight)


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="replicas"):
        build_model(REGRESSOR, (3,), replicas=0)
    with pytest.raises(ValueError, match="replicas"):
        TrainConfig(replicas=0)
    model = build_model(REGRESSOR, (3,), replicas=2)
    with pytest.raises(ValueError, match="invalid x"):
        model(torch.zeros(3, 5, 3))  # 3 data sets for 2 networks
    with pytest.raises(ValueError, match="invalid x"):
        model(torch.zeros(5, 4))
    with pytest.raises(ValueError, match="index"):
        unstack_model(model, 2)
    with pytest.raises(ValueError, match="empty"):
        stack_models([], (3,))
    x, y = _data(r=3)
    with pytest.raises(ValueError, match="one data set per network"):
        train(REGRESSOR, x, y, _config("adamw", replicas=2))


# ---- training R networks together equals R separate runs ----------------------------------------


def _reference_run(net, method, x, y, config):
    """Train one network by hand with the trainer's documented recipe (same batch order)."""
    n = len(x)
    if method == "adamw":
        opt = torch.optim.AdamW(
            net.parameters(), lr=config.resolved_lr, weight_decay=config.resolved_weight_decay
        )
    else:
        opt = ivon.IVON(
            net.parameters(),
            lr=config.resolved_lr,
            ess=n,
            hess_init=config.hess_init,
            beta2=config.beta2,
            weight_decay=config.resolved_weight_decay,
        )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    shuffle = _generator(_stream_seeds(config.seed)[1])
    for _ in range(config.epochs):
        order = torch.randperm(n, generator=shuffle)
        for start in range(0, n, config.batch_size):
            index = order[start : start + config.batch_size]

            def loss_step(index=index):
                opt.zero_grad()
                loss = 0.5 * (net(x[index]) - y[index]).square().sum(-1).mean() / NOISE_VAR
                loss.backward()

            if method == "adamw":
                loss_step()
            else:
                with opt.sampled_params(train=True):
                    loss_step()
            opt.step()
        schedule.step()
    return net, opt


class ReplayNoise:
    """Stand-in for ivon-opt's ``torch``: its ``randn`` records draws, or replays slices of them."""

    def __init__(self, model, dtype):
        self.generator = _generator(11)
        self.dtype = dtype
        self.shapes = [p.shape for p in model.parameters()]
        self.draws, self.replay = [], None

    def __getattr__(self, name):
        return getattr(torch, name)

    def randn(self, numel, device=None, dtype=None):
        if self.replay is None:
            draw = torch.randn(numel, generator=self.generator, dtype=torch.float64)
            self.draws.append(draw)
            return draw.to(self.dtype)
        return next(self.replay)

    def network(self, flat, r):
        """Network r's part of a flat vector over the replicated parameters."""
        parts, offset = [], 0
        for shape in self.shapes:
            size = math.prod(shape[1:])
            parts.append(flat[offset + r * size : offset + (r + 1) * size])
            offset += math.prod(shape)
        return torch.cat(parts)

    def replay_network(self, r):
        self.replay = iter([self.network(d, r).to(self.dtype) for d in self.draws])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("per_network_data", [False, True])
@pytest.mark.parametrize("method", ["adamw", "ivon"])
def test_training_together_equals_separate_runs(method, per_network_data, dtype, monkeypatch):
    r = 3
    x, y = _data(r=r if per_network_data else None, dtype=dtype)
    config = _config(method, replicas=r, lr=1e-2, hess_init=0.5, beta2=0.999)
    init_generator = _generator(_stream_seeds(config.seed)[0])
    init = build_model(REGRESSOR, (3,), generator=init_generator, dtype=dtype, replicas=r)
    noise = ReplayNoise(init, dtype)
    monkeypatch.setattr(ivon._ivon, "torch", noise)  # ivon-opt draws its weight noise with randn
    result = train(REGRESSOR, x, y, config)
    if method == "ivon":
        assert len(noise.draws) == 3 * 3  # one draw per step: 3 epochs of 3 batches
    hess = torch.cat([g["hess"] for g in result.optimizer.param_groups]) if method == "ivon" else 0
    tol = TRAIN_TOL[dtype]
    for k in range(r):
        noise.replay_network(k)
        data = (x[k], y[k]) if per_network_data else (x, y)
        net = unstack_model(init, k)
        net, opt = _reference_run(net, method, *data, config)
        trained = unstack_model(result.model, k)
        for p, q in zip(trained.parameters(), net.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=tol, atol=tol)
        if method == "ivon":
            ref_hess = torch.cat([g["hess"] for g in opt.param_groups])
            torch.testing.assert_close(noise.network(hess, k), ref_hess, rtol=tol, atol=tol)


def test_first_network_equals_the_single_run():
    # The first network's initial weights and the batch order are those of the plain run.
    x, y = _data()
    single = train(REGRESSOR, x, y, _config("adamw"))
    together = train(REGRESSOR, x, y, _config("adamw", replicas=4))
    first = unstack_model(together.model, 0)
    for p, q in zip(first.parameters(), single.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12)
    others = unstack_model(together.model, 1)
    assert not torch.allclose(others[0].weight, single.model[0].weight)


@pytest.mark.parametrize("dtype", DTYPES)
def test_epoch_loss_is_the_mean_over_networks_of_the_gaussian_nll(dtype):
    x, y = _data(dtype=dtype)
    result = train(
        REGRESSOR, x, y, _config("adamw", epochs=1, batch_size=100, lr=1e-12, replicas=3)
    )
    out = result.model(x).detach().double().numpy()  # (R, N, D)
    per_network = 0.5 * ((out - y.double().numpy()) ** 2).sum(-1).mean(-1) / NOISE_VAR
    assert result.history[0].loss == pytest.approx(per_network.mean(), rel=1e-5)


def test_ess_defaults_to_the_per_network_training_set_size():
    x, y = _data(n=30, r=4)
    result = train(REGRESSOR, x, y, _config("ivon", epochs=1, replicas=4, lr=1e-3))
    assert result.optimizer.param_groups[0]["ess"] == 30


def test_classification_networks_train_together():
    g = _generator(0)
    labels = torch.randint(0, 3, (60,), generator=g)
    x = torch.randn(60, 3, generator=g) * 0.3 + torch.eye(3)[labels] * 2
    result = train(CLASSIFIER, x, labels, _config("adamw", epochs=20, lr=3e-2, replicas=5))
    assert result.history[-1].loss < 0.3 * result.history[0].loss
    probs = predict_probs(result.model, x)
    assert probs.shape == (5, 60, 3)
    assert (probs.argmax(-1) == labels).float().mean(-1).min() > 0.95


# ---- predictions ---------------------------------------------------------------------------------


def test_point_predictions_per_network():
    singles = _singles(REGRESSOR, (3,), 3, seed=4)
    model = stack_models(singles, (3,))
    x = torch.randn(7, 3, generator=_generator(5), dtype=torch.float64)
    mean, var = predict_regression(model, x, NOISE_VAR, batch_size=3)
    assert mean.shape == var.shape == (3, 7, 2)
    assert torch.all(var == NOISE_VAR)
    for r, single in enumerate(singles):
        torch.testing.assert_close(mean[r], single(x).detach())
    own = torch.randn(3, 7, 3, generator=_generator(6), dtype=torch.float64)
    mean_own, _ = predict_regression(model, own, NOISE_VAR, batch_size=2)
    for r, single in enumerate(singles):
        torch.testing.assert_close(mean_own[r], single(own[r]).detach())
    conv = build_model(CONV_NET, (2, 5, 5), replicas=2)
    probs = predict_probs(conv, torch.randn(4, 2, 5, 5, generator=_generator(7)))
    assert probs.shape == (2, 4, 3)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 4))


@pytest.mark.parametrize("dtype", DTYPES)
def test_ivon_model_average_per_network(dtype, monkeypatch):
    x, y = _data(dtype=dtype)
    result = train(REGRESSOR, x, y, _config("ivon", replicas=3, lr=1e-2, hess_init=0.5))
    noise = ReplayNoise(result.model, dtype)
    monkeypatch.setattr(ivon._ivon, "torch", noise)
    grid = torch.linspace(-3, 3, 9, dtype=dtype)[:, None].expand(9, 3)
    mean, var = predict_regression_ivon_bma(result.model, result.optimizer, grid, NOISE_VAR, 20)
    assert mean.shape == var.shape == (3, 9, 2)
    assert len(noise.draws) == 20
    group = result.optimizer.param_groups[0]
    scale = (group["ess"] * (group["hess"] + group["weight_decay"])).rsqrt().double()
    flat = torch.cat([p.detach().flatten() for p in result.model.parameters()]).double()
    for r in range(3):
        net = unstack_model(result.model, r).double()
        outputs = []
        for draw in noise.draws:  # network r's weights in each of the 20 samples
            sample = noise.network(flat + draw * scale, r)
            torch.nn.utils.vector_to_parameters(sample, net.parameters())
            outputs.append(net(grid.double()).detach())
        outputs = torch.stack(outputs)
        tol = FORWARD_TOL[dtype] * 10
        torch.testing.assert_close(mean[r].double(), outputs.mean(0), rtol=tol, atol=tol)
        expected_var = outputs.var(0, correction=0) + NOISE_VAR
        torch.testing.assert_close(var[r].double(), expected_var, rtol=tol, atol=tol)
    probs = predict_probs_ivon_bma(
        build_model(CLASSIFIER, (3,), replicas=2),
        ivon.IVON(build_model(CLASSIFIER, (3,), replicas=2).parameters(), lr=0.1, ess=10),
        torch.zeros(4, 3),
        samples=2,
    )
    assert probs.shape == (2, 4, 3)


# ---- checkpoints ------------------------------------------------------------------------------


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("method", ["adamw", "ivon"])
def test_resume_is_bit_identical(method, tmp_path):
    x, y = _data(r=2, dtype=torch.float32)
    config = _config(method, epochs=4, replicas=2, lr=1e-2, checkpoint_path=tmp_path / "run.pt")
    straight = train(REGRESSOR, x, y, _config(method, epochs=4, replicas=2, lr=1e-2))

    def stop_after_two(model, record):
        if record.epoch == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        train(REGRESSOR, x, y, config, on_epoch_end=stop_after_two)
    resumed = train(REGRESSOR, x, y, config)
    assert [rec.epoch for rec in resumed.history] == [1, 2, 3, 4]
    for p, q in zip(resumed.model.parameters(), straight.model.parameters(), strict=True):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match="replicas"):
        train(
            REGRESSOR,
            x[:1],
            y[:1],
            _config(method, replicas=1, checkpoint_path=config.checkpoint_path),
        )
    np.testing.assert_array_equal(
        [rec.loss for rec in resumed.history], [rec.loss for rec in straight.history]
    )
