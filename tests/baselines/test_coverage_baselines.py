import numpy as np
import pytest
import torch

from amp import coverage
from baselines import coverage as baseline_coverage
from baselines import replicas


@pytest.fixture
def quick_protocol(monkeypatch):
    """A few epochs instead of the study's thousands (the shapes and bookkeeping are tested)."""
    monkeypatch.setattr(replicas, "COVERAGE_ADAMW_EPOCHS", 5)
    monkeypatch.setattr(replicas, "COVERAGE_IVON_EPOCHS", 5)


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
