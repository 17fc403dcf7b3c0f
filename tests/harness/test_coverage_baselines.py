import numpy as np
import pytest
import torch

from amp import specs
from baselines import predict_regression, predict_regression_ivon_bma, train
from harness import coverage
from harness import coverage_baselines as baseline_coverage
from harness.data import make_sine, sine_function


@pytest.fixture
def quick_protocol(monkeypatch):
    """A few epochs instead of the study's thousands (the shapes and bookkeeping are tested)."""
    monkeypatch.setattr(baseline_coverage, "COVERAGE_ADAMW_EPOCHS", 5)
    monkeypatch.setattr(baseline_coverage, "COVERAGE_IVON_EPOCHS", 5)


def test_adamw_networks_and_their_ensembles(quick_protocol):
    x, y = coverage.study_data(coverage.StudyConfig(networks=10))
    grid = coverage.grid_for(x)[:50]
    out = baseline_coverage.train_coverage_baseline("adamw", x, y, grid, networks=10)
    assert out["adamw"]["mean"].shape == (10, 50)
    # point predictions carry only the noise variance
    assert np.allclose(out["adamw"]["var"], 0.05**2)
    # ensembles of five: mixture mean and variance of their members
    members = out["adamw"]["mean"].reshape(2, 5, 50)
    assert np.allclose(out["adamw_ensemble"]["mean"], members.mean(1), atol=1e-5)
    assert np.allclose(out["adamw_ensemble"]["var"], 0.05**2 + members.var(1), rtol=1e-4)


def test_ivon_networks_predict_a_model_average(quick_protocol):
    x, y = coverage.study_data(coverage.StudyConfig(networks=3, variant="data"))
    grid = coverage.grid_for(x[0])[:20]
    out = baseline_coverage.train_coverage_baseline("ivon", x, y, grid, networks=3, test_samples=8)
    assert set(out) == {"ivon"}
    assert out["ivon"]["mean"].shape == (3, 20)
    assert np.all(out["ivon"]["var"] >= 0.05**2 * (1 - 1e-6))


def test_unknown_method_is_rejected(quick_protocol):
    x = torch.zeros(4, 1)
    with pytest.raises(ValueError, match="method"):
        baseline_coverage.train_coverage_baseline("sgd", x, x, x, networks=2)


# ---- the coverage study's protocol --------------------------------------------------------------


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batched products: threads only contend on a shared CPU
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_coverage_protocol_fits_the_sine_and_learns_ivon_variances():
    sine = make_sine(dtype=torch.float32)
    truth = sine_function(sine.x_test.double()).float()
    layers, noise_var = specs.arch("toy_regression"), 0.05**2
    far = torch.tensor([[-20.0], [20.0]])
    adamw = train(
        layers,
        sine.x_train,
        sine.y_train,
        baseline_coverage.coverage_config("adamw", replicas=20, progress=False),
    )
    mean, _ = predict_regression(adamw.model, sine.x_test, noise_var)
    assert (mean - truth).square().mean(1).sqrt().median() < 0.03
    assert (mean - sine.y_test).square().mean(1).sqrt().median() < 0.07

    config = baseline_coverage.coverage_config("ivon", replicas=20, progress=False)
    assert config.batch_size >= len(sine.x_train)
    result = train(layers, sine.x_train, sine.y_train, config)
    assert result.optimizer.param_groups[0]["ess"] == len(sine.x_train)
    mean, var = predict_regression_ivon_bma(result.model, result.optimizer, sine.x_test, noise_var)
    assert (mean - truth).square().mean(1).sqrt().median() < 0.035
    std_in = var.sqrt().median()
    assert noise_var**0.5 < std_in < 0.1
    _, var_far = predict_regression_ivon_bma(result.model, result.optimizer, far, noise_var)
    assert var_far.sqrt().median() > 20 * std_in
    hess = torch.cat([group["hess"] for group in result.optimizer.param_groups])
    assert (
        hess - baseline_coverage.COVERAGE_IVON_HESS_INIT
    ).abs().median() > 0.5 * baseline_coverage.COVERAGE_IVON_HESS_INIT
