"""MP on a CUDA device gives the CPU's answers (skipped without one; ``make gpu-check``)."""

import numpy as np
import pytest
import torch

from amp import specs
from amp.network import Network
from amp.trainer import Trainer
from harness.data import make_sine
from harness.runs.mp import MPConfig, run_mp

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("schedule", ["sequential", "scaled"])
def test_run_on_cuda_matches_the_cpu(schedule):
    data = make_sine(seed=1, dtype=torch.float64)
    out = {
        device: run_mp(
            data,
            "toy_regression",
            MPConfig(epochs=3, batch_size=40, schedule=schedule, device=device),
        )
        for device in ("cpu", "cuda")
    }
    np.testing.assert_allclose(out["cuda"].mean, out["cpu"].mean, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(out["cuda"].var, out["cpu"].var, rtol=1e-8)


def test_convolutional_network_trains_and_resumes_on_cuda(tmp_path):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 8, 8, generator=generator, dtype=torch.float32).cuda()
    y = torch.randint(0, 3, (64,), generator=generator).cuda()
    layers = [
        specs.Conv2d(4, 3, padding=1),
        specs.LeakyReLU(),
        specs.MaxPool2d(2),
        specs.Flatten(),
        specs.Linear(3),
        specs.Argmax(),
    ]

    def trainer():
        net = Network(layers, (1, 8, 8), seed=0, dtype=torch.float32, device="cuda")
        return Trainer(net, 32, seed=1, progress=False)

    full = trainer()
    full.fit(x, y, epochs=2)
    half = trainer()
    half.fit(x, y, epochs=1, checkpoint=tmp_path / "ck.pt")
    resumed = Trainer.load(tmp_path / "ck.pt", device="cuda")
    resumed.fit(x, y, epochs=1)
    probs = full.net.predict(x)
    assert probs.is_cuda
    assert bool(torch.isfinite(probs).all())
    torch.testing.assert_close(resumed.net.predict(x), probs)
