"""Trained models restored from their checkpoints predict exactly what their runs predicted."""

import numpy as np
import pytest
import torch
from test_run_baseline import CONFIG, toy_images

from harness.runs.baseline import run_baseline
from harness.runs.mp import MPConfig, run_mp
from harness.runs.restore import load_predictor


def test_mp_predictor_matches_the_run_and_its_per_epoch_scores(tmp_path):
    data = toy_images(n_train=16, n_test=24)
    checkpoint = tmp_path / "mp.pt"
    config = MPConfig(epochs=1, batch_size=16, dtype="float32")  # MP's mlp: seconds per step
    pred = run_mp(data, "mlp", config, checkpoint=checkpoint)
    history = pred.metadata["history"]
    assert [h["epoch"] for h in history] == [1]
    final = pred.metrics()
    for key in ("accuracy", "nll", "ece_15", "ece_mv", "confidence_mean", "overconfidence"):
        assert history[-1]["test"][key] == pytest.approx(final[key], abs=1e-6)
    predict = load_predictor("mp", checkpoint, "mlp", data.input_shape)
    np.testing.assert_allclose(predict(data.x_test).numpy(), pred.probs, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("method", ["adamw", "ivon"])
def test_baseline_predictors_match_the_run(tmp_path, method):
    data = toy_images()
    checkpoint = tmp_path / f"{method}.pt"
    out = run_baseline(data, "mlp", method, CONFIG, checkpoint=checkpoint)
    artifacts = {"adamw": out} if method == "adamw" else out
    for name, pred in artifacts.items():
        predict = load_predictor(
            name, checkpoint, "mlp", data.input_shape, test_samples=5, seed=CONFIG.seed
        )
        probs = predict(data.x_test.double())  # inputs are cast to the run's dtype
        assert probs.dtype == torch.float32
        np.testing.assert_allclose(probs.numpy(), pred.probs, rtol=1e-5, atol=1e-7)


def test_errors(tmp_path):
    data = toy_images()
    checkpoint = tmp_path / "adamw.pt"
    run_baseline(data, "mlp", "adamw", CONFIG, checkpoint=checkpoint)
    with pytest.raises(ValueError, match="invalid artifact"):
        load_predictor("sgd", checkpoint, "mlp", data.input_shape)
    with pytest.raises(Exception, match="not trained with IVON"):
        load_predictor("ivon", checkpoint, "mlp", data.input_shape)
    with pytest.raises(Exception, match="lacks"):
        load_predictor("mp", checkpoint, "mlp", data.input_shape)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", ["adamw", "ivon"])
def test_predictor_on_cuda_matches_the_cpu(tmp_path, method):
    data = toy_images()
    checkpoint = tmp_path / f"{method}.pt"
    run_baseline(data, "mlp", method, CONFIG, checkpoint=checkpoint)
    name = "adamw" if method == "adamw" else "ivon"
    kwargs = {"test_samples": 5, "seed": CONFIG.seed}
    cpu = load_predictor(name, checkpoint, "mlp", data.input_shape, **kwargs)(data.x_test)
    cuda = load_predictor(name, checkpoint, "mlp", data.input_shape, device="cuda", **kwargs)
    probs = cuda(data.x_test)
    assert probs.device.type == "cpu"
    if method == "adamw":  # IVON's weight noise comes from the device's own generator
        np.testing.assert_allclose(probs.numpy(), cpu.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(probs.sum(1).numpy(), 1.0, rtol=1e-5)
