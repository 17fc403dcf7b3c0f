from __future__ import annotations

import math

import ivon
import numpy as np
import pytest
import torch

from amp import specs
from amp.io import CorruptFileError, load_checkpoint
from baselines.train import DivergenceError, TrainConfig, train

CLASSIFIER = (specs.Linear(16), specs.LeakyReLU(), specs.Linear(2), specs.Argmax())
NOISE_VAR = 0.01
REGRESSOR = (specs.Linear(16), specs.LeakyReLU(), specs.Linear(1), specs.Regression(NOISE_VAR))


class Interrupted(Exception):
    pass


def _blobs(n=96, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 2, generator=g, dtype=dtype) * 0.5 + (2 * y[:, None] - 1).to(dtype) * 1.5
    return x, y


def _sine(n=96, dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 1, generator=g, dtype=dtype) * 2 - 1
    return x, torch.sin(3 * x) + 0.1 * torch.randn(n, 1, generator=g, dtype=dtype)


def _config(method, **kwargs):
    return TrainConfig(
        **{"method": method, "epochs": 3, "batch_size": 16, "progress": False, "device": "cpu"}
        | kwargs
    )


def _same_parameters(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


@pytest.mark.parametrize("method", ["adamw", "ivon"])
def test_training_lowers_classification_loss(method):
    x, y = _blobs()
    lr = 1e-2 if method == "adamw" else None  # IVON at its reference default 0.1
    result = train(CLASSIFIER, x, y, _config(method, epochs=6, lr=lr))
    losses = [record.loss for record in result.history]
    assert len(losses) == 6
    assert losses[-1] < 0.5 * losses[0]
    accuracy = (result.model(x).argmax(-1) == y).float().mean().item()
    assert accuracy > 0.95


@pytest.mark.parametrize("method", ["adamw", "ivon"])
def test_training_lowers_regression_loss(method):
    x, y = _sine()
    lr = 1e-2  # IVON at 0.1 diverges here: the loss carries the factor 1 / NOISE_VAR = 100
    result = train(REGRESSOR, x, y, _config(method, epochs=10, lr=lr))
    losses = [record.loss for record in result.history]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_loss_is_the_documented_likelihood(kind, dtype):
    # One full batch at a negligible learning rate: the epoch loss is the loss at the final weights.
    x, y = _blobs(dtype=dtype) if kind == "classification" else _sine(dtype=dtype)
    layers = CLASSIFIER if kind == "classification" else REGRESSOR
    result = train(layers, x, y, _config("adamw", epochs=1, batch_size=len(x), lr=1e-12))
    out = result.model(x).detach().double().numpy()
    if kind == "classification":
        log_probs = out - np.log(np.exp(out).sum(-1, keepdims=True))
        expected = -log_probs[np.arange(len(y)), y.numpy()].mean()
    else:
        expected = (0.5 * (y.double().numpy() - out) ** 2 / NOISE_VAR).mean()
    tol = 1e-5 if dtype == torch.float32 else 1e-9
    assert result.history[0].loss == pytest.approx(expected, rel=tol)
    assert next(result.model.parameters()).dtype == dtype


def test_default_hyperparameters_follow_the_reference_script():
    x, y = _blobs()
    adamw = train(CLASSIFIER, x, y, _config("adamw", epochs=1)).optimizer
    assert isinstance(adamw, torch.optim.AdamW)
    group = adamw.param_groups[0]
    assert (group["initial_lr"], group["weight_decay"]) == (1e-3, 1e-2)
    assert (group["betas"], group["eps"]) == ((0.9, 0.999), 1e-8)
    opt = train(CLASSIFIER, x, y, _config("ivon", epochs=1)).optimizer
    assert isinstance(opt, ivon.IVON)
    group = opt.param_groups[0]
    assert (group["initial_lr"], group["ess"], group["weight_decay"]) == (0.1, len(x), 1e-4)
    assert (group["hess_init"], group["beta1"], group["beta2"]) == (1.0, 0.9, 0.99999)


def test_cosine_schedule_stepped_per_epoch_and_timings():
    x, y = _blobs()
    result = train(CLASSIFIER, x, y, _config("adamw", epochs=4, lr=0.01))
    expected = [0.005 * (1 + math.cos(math.pi * e / 4)) for e in range(4)]
    assert [r.lr for r in result.history] == pytest.approx(expected)
    assert [r.epoch for r in result.history] == [1, 2, 3, 4]
    assert all(r.seconds > 0 for r in result.history)
    assert result.total_seconds == pytest.approx(sum(r.seconds for r in result.history))


@pytest.mark.parametrize("method", ["adamw", "ivon"])
def test_same_seed_same_run_other_seed_other_run(method):
    x, y = _blobs()
    a = train(CLASSIFIER, x, y, _config(method, epochs=1, seed=3))
    b = train(CLASSIFIER, x, y, _config(method, epochs=1, seed=3))
    c = train(CLASSIFIER, x, y, _config(method, epochs=1, seed=4))
    assert _same_parameters(a.model, b.model)
    assert not _same_parameters(a.model, c.model)


def _interrupt_after_first_epoch(model, record):
    if record.epoch == 1:
        raise Interrupted


@pytest.mark.parametrize("method", ["adamw", "ivon"])
def test_resume_after_interruption_is_bit_identical(method, tmp_path):
    x, y = _blobs()
    reference = train(CLASSIFIER, x, y, _config(method))
    config = _config(method, checkpoint_path=tmp_path / "run.pt")
    with pytest.raises(Interrupted):
        train(CLASSIFIER, x, y, config, on_epoch_end=_interrupt_after_first_epoch)
    assert load_checkpoint(tmp_path / "run.pt")["epoch"] == 1
    torch.manual_seed(12345)  # whatever the caller did in between must not matter
    seen = []
    resumed = train(CLASSIFIER, x, y, config, on_epoch_end=lambda m, r: seen.append(r.epoch))
    assert seen == [2, 3]
    assert _same_parameters(reference.model, resumed.model)
    assert [r.loss for r in resumed.history] == [r.loss for r in reference.history]
    if method == "ivon":
        steps = 3 * math.ceil(len(x) / 16)
        assert reference.optimizer.current_step == steps
        assert resumed.optimizer.current_step == steps
        groups = zip(reference.optimizer.param_groups, resumed.optimizer.param_groups, strict=True)
        for g, h in groups:
            assert torch.equal(g["hess"], h["hess"])
            assert torch.equal(g["momentum"], h["momentum"])


def test_after_epoch_sees_the_result_so_far_with_its_optimizer():
    x, y = _blobs()
    seen = []

    def after_epoch(result, record):
        seen.append((record.epoch, len(result.history), type(result.optimizer)))
        assert result.history[-1] is record

    train(CLASSIFIER, x, y, _config("ivon"), after_epoch=after_epoch)
    assert seen == [(1, 1, ivon.IVON), (2, 2, ivon.IVON), (3, 3, ivon.IVON)]


def test_finished_checkpoint_is_returned_without_training(tmp_path):
    x, y = _blobs()
    config = _config("adamw", epochs=2, checkpoint_path=tmp_path / "run.pt")
    first = train(CLASSIFIER, x, y, config)
    calls = []
    again = train(CLASSIFIER, x, y, config, on_epoch_end=lambda m, r: calls.append(r))
    assert calls == []
    assert _same_parameters(first.model, again.model)
    assert again.history == first.history


def test_checkpoint_of_another_run_is_refused(tmp_path):
    x, y = _blobs()
    train(CLASSIFIER, x, y, _config("adamw", epochs=1, checkpoint_path=tmp_path / "run.pt"))
    other = _config("adamw", epochs=1, lr=0.5, checkpoint_path=tmp_path / "run.pt")
    with pytest.raises(ValueError, match=r"different run.*'lr'"):
        train(CLASSIFIER, x, y, other)
    with pytest.raises(ValueError, match=r"different run.*'x'"):
        train(
            CLASSIFIER,
            x[:50],
            y[:50],
            _config("adamw", epochs=1, checkpoint_path=tmp_path / "run.pt"),
        )


def test_corrupt_checkpoint_gives_clear_error(tmp_path):
    path = tmp_path / "run.pt"
    path.write_bytes(b"not a checkpoint")
    x, y = _blobs()
    with pytest.raises(CorruptFileError, match="corrupt or truncated"):
        train(CLASSIFIER, x, y, _config("adamw", checkpoint_path=path))


@pytest.mark.parametrize("method", ["adamw", "ivon"])
def test_nan_input_raises_divergence_error(method):
    x, y = _blobs()
    x[5, 0] = float("nan")
    with pytest.raises(
        DivergenceError, match=rf"{method} diverged: loss nan at epoch 1, batch \d/6"
    ):
        train(CLASSIFIER, x, y, _config(method))


@pytest.mark.parametrize("method", ["adamw", "ivon"])
def test_divergence_keeps_last_good_checkpoint(method, tmp_path):
    x, y = _blobs()
    path = tmp_path / "run.pt"

    def poison(model, record):
        with torch.no_grad():
            model[0].weight[0, 0] = float("nan")

    with pytest.raises(DivergenceError, match=rf"epoch 2, batch 1/6.*epoch 1 kept at {path}"):
        train(CLASSIFIER, x, y, _config(method, checkpoint_path=path), on_epoch_end=poison)
    state = load_checkpoint(path)
    assert state["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_bad_inputs_are_rejected():
    x, y = _blobs()
    with pytest.raises(ValueError, match="int64 labels"):
        train(CLASSIFIER, x, y.float(), _config("adamw"))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\]"):
        train(CLASSIFIER, x, y + 1, _config("adamw"))
    with pytest.raises(ValueError, match=r"shape \(N, 1\)"):
        train(REGRESSOR, *_sine()[:1], _sine()[1][:, 0], _config("adamw"))
    with pytest.raises(ValueError, match="floating-point"):
        train(CLASSIFIER, x.long(), y, _config("adamw"))
    with pytest.raises(ValueError, match="invalid method"):
        TrainConfig(method="sgd")
    with pytest.raises(ValueError, match="invalid epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="invalid beta2"):
        TrainConfig(beta2=1.5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", ["adamw", "ivon"])
def test_resume_on_cuda(method, tmp_path):
    x, y = _blobs()
    reference = train(CLASSIFIER, x, y, _config(method, device="cuda"))
    config = _config(method, device="cuda", checkpoint_path=tmp_path / "run.pt")
    with pytest.raises(Interrupted):
        train(CLASSIFIER, x, y, config, on_epoch_end=_interrupt_after_first_epoch)
    resumed = train(CLASSIFIER, x, y, config)
    assert all(p.is_cuda for p in resumed.model.parameters())
    for p, q in zip(reference.model.parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    if method == "ivon":
        assert resumed.optimizer.current_step == reference.optimizer.current_step
        assert all(
            g["hess"].is_cuda and g["momentum"].is_cuda for g in resumed.optimizer.param_groups
        )
