from __future__ import annotations

import ivon
import pytest
import torch

from amp import specs
from amp.runtime import Stopwatch
from baselines.models import build_model
from baselines.predict import (
    predict_probs,
    predict_probs_ivon_bma,
    predict_regression,
    predict_regression_ivon_bma,
)

DTYPES = [torch.float32, torch.float64]
TOLERANCE = {torch.float32: 1e-6, torch.float64: 1e-12}
CLASSIFIER = (specs.Linear(8), specs.LeakyReLU(), specs.Linear(4), specs.Argmax())
NOISE_VAR = 0.05**2


def _setup(layers, dtype, ess=20.0):
    model = build_model(layers, (3,), generator=torch.Generator().manual_seed(0), dtype=dtype)
    # An untrained IVON posterior: weight noise of standard deviation 1 / sqrt(ess * (1 + 1e-4)).
    optimizer = ivon.IVON(model.parameters(), lr=0.1, ess=ess)
    x = torch.randn(23, 3, generator=torch.Generator().manual_seed(1), dtype=dtype)
    return model, optimizer, x


def _reference_samples(model, optimizer, x, samples, seed, transform):
    """Outputs of each IVON weight sample, drawn in the documented order."""
    outputs = []
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        for _ in range(samples):
            with optimizer.sampled_params():
                outputs.append(transform(model(x)))
    return torch.stack(outputs)


@pytest.mark.parametrize("dtype", DTYPES)
def test_predict_probs_is_batched_softmax(dtype):
    model, _, x = _setup(CLASSIFIER, dtype)
    probs = predict_probs(model, x, batch_size=5)
    expected = torch.softmax(model(x), dim=-1).detach()
    torch.testing.assert_close(probs, expected, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])
    torch.testing.assert_close(probs.sum(-1), torch.ones(len(x), dtype=dtype))
    assert probs.dtype == dtype
    assert not probs.requires_grad


@pytest.mark.parametrize("dtype", DTYPES)
def test_ivon_bma_is_mean_of_sampled_softmax(dtype):
    model, optimizer, x = _setup(CLASSIFIER, dtype)
    before = [p.detach().clone() for p in model.parameters()]
    rng = torch.get_rng_state()
    bma = predict_probs_ivon_bma(model, optimizer, x, samples=30, batch_size=7, seed=5)
    assert torch.equal(torch.get_rng_state(), rng), "caller's global random state was changed"
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters(), strict=True))
    sampled = _reference_samples(model, optimizer, x, 30, 5, lambda out: torch.softmax(out, -1))
    expected = sampled.mean(0)
    tol = 10 * TOLERANCE[dtype]
    torch.testing.assert_close(bma, expected, rtol=tol, atol=tol)
    torch.testing.assert_close(bma.sum(-1), torch.ones(len(x), dtype=dtype))
    assert (bma >= 0).all()
    at_mean = predict_probs(model, x)
    assert (bma - at_mean).abs().max() > 1e-3, "the model average should differ from IVON@mean"


def test_ivon_bma_seed_controls_the_samples():
    model, optimizer, x = _setup(CLASSIFIER, torch.float64)
    a = predict_probs_ivon_bma(model, optimizer, x, samples=3, seed=1)
    b = predict_probs_ivon_bma(model, optimizer, x, samples=3, seed=1)
    c = predict_probs_ivon_bma(model, optimizer, x, samples=3, seed=2)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("dtype", DTYPES)
def test_regression_point_estimate(dtype):
    x = torch.linspace(-1, 1, 11, dtype=dtype)[:, None]
    model = build_model(specs.arch("toy_regression"), (1,), dtype=dtype)
    mean, var = predict_regression(model, x, NOISE_VAR, batch_size=4)
    torch.testing.assert_close(
        mean, model(x).detach(), rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype]
    )
    assert torch.equal(var, torch.full((len(x), 1), NOISE_VAR, dtype=dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_regression_bma_is_gaussian_mixture_moments(dtype):
    model = build_model(specs.arch("toy_regression"), (1,), dtype=dtype)
    optimizer = ivon.IVON(model.parameters(), lr=0.1, ess=50.0)
    x = torch.linspace(-3, 3, 17, dtype=dtype)[:, None]
    mean, var = predict_regression_ivon_bma(model, optimizer, x, NOISE_VAR, samples=40, seed=3)
    means = _reference_samples(model, optimizer, x, 40, 3, lambda out: out)
    tol = 100 * TOLERANCE[dtype]
    torch.testing.assert_close(mean, means.mean(0), rtol=tol, atol=tol)
    torch.testing.assert_close(var, NOISE_VAR + means.var(0, correction=0), rtol=tol, atol=tol)
    assert mean.shape == var.shape == (17, 1)
    assert (var >= NOISE_VAR).all()
    assert (var > 1.01 * NOISE_VAR).any()


def test_stopwatch_records_prediction_time():
    model, optimizer, x = _setup(CLASSIFIER, torch.float32)
    watch = Stopwatch()
    predict_probs(model, x, stopwatch=watch)
    first = watch.seconds
    predict_probs_ivon_bma(model, optimizer, x, samples=2, stopwatch=watch)
    assert 0 < first < watch.seconds


def test_bad_arguments_are_rejected():
    model, optimizer, x = _setup(CLASSIFIER, torch.float32)
    adamw = torch.optim.AdamW(model.parameters())
    with pytest.raises(ValueError, match="invalid optimizer: AdamW"):
        predict_probs_ivon_bma(model, adamw, x, samples=2)
    with pytest.raises(ValueError, match="invalid samples"):
        predict_probs_ivon_bma(model, optimizer, x, samples=0)
    with pytest.raises(ValueError, match="invalid batch_size"):
        predict_probs(model, x, batch_size=0)
    with pytest.raises(ValueError, match="invalid x"):
        predict_probs(model, x.long())
    with pytest.raises(ValueError, match="invalid noise_var"):
        predict_regression(model, x, 0.0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_model_with_cpu_inputs():
    model, optimizer, x = _setup(CLASSIFIER, torch.float32)
    model.cuda()
    optimizer = ivon.IVON(model.parameters(), lr=0.1, ess=20.0)
    probs = predict_probs(model, x, batch_size=5)
    bma = predict_probs_ivon_bma(model, optimizer, x, samples=4, batch_size=5)
    assert probs.device.type == bma.device.type == "cpu"
    torch.testing.assert_close(bma.sum(-1), torch.ones(len(x)))
    torch.testing.assert_close(probs, torch.softmax(model(x.cuda()), -1).detach().cpu())
