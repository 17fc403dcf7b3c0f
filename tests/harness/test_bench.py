import csv
import math

import pytest
import torch

from amp import specs
from amp.network import Network
from amp.trainer import Trainer
from harness import bench
from harness.bench_profile import layer_kind, profile_pass
from harness.data import DatasetNotFoundError, load_dataset


@pytest.mark.slow
def test_tiny_benchmark_writes_its_table(tmp_path):
    assert bench.main(["--tiny", "--archs", "mlp", "--threads", "1", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "bench_cpu.md").read_text()
    assert "| mlp | real:fashion_mnist | mp | float32 | on | compiled | 1 |" in table
    assert "| mlp | real:fashion_mnist | mp | float32 | on | eager | 1 |" in table
    with open(tmp_path / "bench_cpu.csv") as handle:
        rows = list(csv.DictReader(handle))
    methods = {row["method"] for row in rows}
    assert methods == {"mp", "mp_sequential", "adamw", "ivon"}
    assert {row["inputs"] for row in rows} == {"real:fashion_mnist", "random"}
    for row in rows:
        assert float(row["seconds_per_1000"]) > 0
        assert float(row["peak_rss_mb"]) > 0
        assert row["threads"] == "1"
        if row["method"] in ("adamw", "ivon", "mp_sequential"):
            # MP flushes subnormals by default; the baselines run in the IEEE default mode
            assert row["flush_denormal"] == str(row["method"] == "mp_sequential")
    mp_modes = {row["flush_denormal"] for row in rows if row["method"] == "mp"}
    assert mp_modes == {"True", "False"}  # real inputs: flushed and kept
    kernels = {(row["dtype"], row["compiled"]) for row in rows if row["method"] == "mp"}
    assert kernels == {(d, c) for d in ("float32", "float64") for c in ("True", "False")}
    for adamw in (row for row in rows if row["method"] == "adamw"):
        assert math.isclose(float(adamw["mp_over_adamw"]), 1.0)
    assert "## Where MP's time goes" in table
    assert "linear backward" in table


def test_paper_schedule_estimate_counts_169_sweeps():
    row = bench.Measurement("mlp", "mp", "float32", 1000, 1.0, 1.0, 0.0, math.nan)
    # 25 epochs with ceil(e/2) sweeps: 1+1+2+2+...+12+12+13 = 169
    assert bench.paper_seconds(row, 1000) == 169.0
    baseline = bench.Measurement("mlp", "adamw", "float32", 1000, 1.0, math.nan, 0.0, math.nan)
    assert bench.paper_seconds(baseline, 1000) == 25.0


def test_profile_shares_cover_every_layer_kind_and_sum_to_one():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 28, 28, generator=gen)
    y = torch.randint(0, 10, (64,), generator=gen)
    net = Network(specs.arch("lenet5"), (1, 28, 28), dtype=torch.float32)
    trainer = Trainer(net, 32)
    shares = profile_pass(trainer, x, y)
    kinds = {key.split()[0] for key in shares if key != "other"}
    assert kinds == {"conv", "linear", "leaky_relu", "maxpool", "flatten", "argmax"}
    assert {layer_kind(layer) for layer in net.layers} == kinds
    assert math.isclose(sum(shares.values()), 1.0, rel_tol=1e-9)
    assert all(0.0 <= value <= 1.0 for value in shares.values())
    assert all("forward" not in vars(layer) for layer in net.layers)  # timers removed
    assert trainer.epoch == 1


def test_real_inputs_of_conv890k_are_fashion_mnist_padded_and_replicated():
    try:
        reference = load_dataset(
            "fashion_mnist", subset=8, normalization="global", dtype=torch.float32
        )
    except DatasetNotFoundError:
        pytest.skip("Fashion-MNIST is not installed (make data)")
    x, y, name = bench.real_data("conv890k", 8, torch.float32, torch.device("cpu"))
    if name.startswith("real:cifar10"):
        assert x.shape == (8, 3, 32, 32)
        return
    assert name == "real:fashion_mnist(3x32x32)"
    assert x.shape == (8, 3, 32, 32)
    for channel in range(3):
        assert torch.equal(x[:, channel, 2:30, 2:30], reference.x_train[:, 0])
    assert torch.equal(x[:, :, 0, 2:30], x[:, :, 2, 2:30])  # edge rows replicated
    assert torch.equal(y, reference.y_train)


def test_ratios_compare_rows_on_the_same_inputs_and_paper_hours_use_real_data():
    def row(method, inputs, seconds):
        return bench.Measurement(
            "mlp", method, "float32", 100, seconds, math.nan, 0.0, math.nan, inputs
        )

    rows = [
        row("mp", "real:fashion_mnist", 10.0),
        row("adamw", "real:fashion_mnist", 0.5),
        row("ivon", "real:fashion_mnist", 1.0),
        row("mp", "random", 4.0),
        row("adamw", "random", 1.0),
        row("ivon", "random", 2.0),
    ]
    _, records = bench.render(rows, "cpu")
    assert [r["mp_over_adamw"] for r in records] == [20.0, 1.0, 2.0, 4.0, 1.0, 2.0]
    assert records[0]["paper_run_hours"] == pytest.approx(169 * 10.0 * 60 / 3600)
    assert all(math.isnan(r["paper_run_hours"]) for r in records[3:])
