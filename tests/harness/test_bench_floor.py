import math

import pytest
import torch

from amp import specs
from amp.network import Network
from amp.runtime import denormals_flushed
from amp.schedules import DEFAULT_GROUP_SIZE
from amp.trainer import Trainer
from harness import bench_floor


def _random_mlp_data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, 28, 28, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def test_floor_rejects_convolutional_networks():
    x, y = torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="convolutions"):
        bench_floor.floor_rows("lenet5", x, y)


def test_capture_keeps_one_group_of_every_fully_connected_layer():
    x, y = _random_mlp_data(2 * DEFAULT_GROUP_SIZE)
    net = Network(specs.arch("mlp"), specs.default_input_shape("mlp"))
    captured = bench_floor._capture(net)
    Trainer(net, 2 * DEFAULT_GROUP_SIZE).fit(x, y, epochs=1, iterations=1)
    assert sorted(captured) == [1, 3, 5]  # Flatten, Linear, LeakyReLU, Linear, LeakyReLU, Linear
    for index, (layer, fwd, m_back) in captured.items():
        assert layer is net.layers[index]
        assert fwd.x_mean.shape[0] == DEFAULT_GROUP_SIZE
        assert m_back.shape == fwd.out_mean.shape  # (G, 1, D_out)
        assert (fwd.x_var is None) == layer.first


@pytest.mark.slow
def test_floor_report_times_every_kernel_of_every_layer():
    x, y = _random_mlp_data(128)
    rows, flushed = bench_floor.floor_rows("mlp", x, y, repeats=1)
    assert not denormals_flushed()  # MP's mode stays inside its scopes
    kernels = {(r.layer, r.kernel) for r in rows}
    layers = {"1 784×256", "3 256×256", "5 256×10"}
    assert kernels == {(lay, k) for lay in layers for k in bench_floor.PRIMITIVES} | {
        ("pass", "mp"),
        ("pass", "adamw"),
    }
    assert all(math.isfinite(r.seconds_per_1000) and r.seconds_per_1000 > 0 for r in rows)
    text = bench_floor.render("mlp", "random", rows, flushed, torch.get_num_threads())
    floor = sum(r.seconds_per_1000 for r in rows if r.layer != "pass")
    assert f"| **floor** (sum of the kernels) | {floor:.4g} |" in text
    assert f"subnormals {'flushed' if flushed else 'kept'}" in text
