import pytest
import torch

from amp import specs
from amp.factors import linear_fused, linear_series
from amp.network import Network
from amp.trainer import Trainer
from harness.data import make_sine

F64 = torch.float64
SMALL_CNN = [
    specs.Conv2d(3, 3, padding=1),
    specs.LeakyReLU(),
    specs.MaxPool2d(2),
    specs.Flatten(),
    specs.Linear(4),
    specs.Argmax(),
]


def image_data(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 6, 6, generator=g, dtype=F64)
    y = torch.randint(0, 4, (n,), generator=g)
    return x, y


def copy_replica(replicated, r, arch, shape):
    """A single network with the priors of network ``r`` of a replicated one."""
    net = Network(arch, shape, seed=123)
    for single, many in zip(net.weight_layers, replicated.weight_layers, strict=True):
        single.prior_w, single.prior_b = many.prior_w[r].clone(), many.prior_b[r].clone()
        single.q_w, single.q_b = single.prior_w.clone(), single.prior_b.clone()
    return net


@pytest.mark.parametrize("schedule", ["sequential", "scaled"])
@pytest.mark.parametrize("problem", ["sine", "cnn"])
def test_networks_trained_together_equal_networks_trained_alone(schedule, problem):
    if problem == "sine":
        data = make_sine(seed=4)
        arch, shape, x, y, x_test = (
            specs.arch("toy_regression"),
            (1,),
            data.x_train[:60],
            data.y_train[:60],
            data.x_test,
        )
    else:
        arch, shape = SMALL_CNN, (1, 6, 6)
        x, y = image_data()
        x_test, _ = image_data(8, seed=1)
    together = Network(arch, shape, seed=0, replicas=3)
    Trainer(together, 20, schedule=schedule, group_size=5, seed=7).fit(x, y, epochs=3)
    joint = together.predict(x_test)
    for r in range(3):
        alone = copy_replica(together, r, arch, shape)
        Trainer(alone, 20, schedule=schedule, group_size=5, seed=7).fit(x, y, epochs=3)
        single = alone.predict(x_test)
        if isinstance(single, tuple):
            for a, b in zip(joint, single, strict=True):
                assert torch.allclose(a[r], b, rtol=1e-9, atol=1e-12)
        else:
            assert torch.allclose(joint[r], single, rtol=1e-9, atol=1e-12)


def test_prior_draws_differ_between_replicas():
    net = Network(specs.arch("toy_regression"), (1,), seed=0, replicas=4)
    means = net.weight_layers[1].prior_w.mean
    assert means.shape == (4, 32, 32)
    assert not torch.equal(means[0], means[1])


def test_per_network_data_and_predictions():
    net = Network(specs.arch("toy_regression"), (1,), seed=0, replicas=2)
    sets = [make_sine(seed=s) for s in (0, 1)]
    x = torch.stack([s.x_train for s in sets])
    y = torch.stack([s.y_train for s in sets])
    Trainer(net, 200).fit(x, y, epochs=1, iterations=3)
    mean, var = net.predict(torch.stack([s.x_test for s in sets]))
    assert mean.shape == (2, 50, 1)
    assert bool((var > 0).all())


def count_calls(monkeypatch, module, name):
    """Wrap ``module.name`` so that every call records whether it returned a result."""
    used = []
    original = getattr(module, name)

    def counting(*args, **kwargs):
        result = original(*args, **kwargs)
        used.append(result is not None)
        return result

    monkeypatch.setattr(module, name, counting)
    return used


@pytest.mark.parametrize("schedule", ["sequential", "scaled", "grouped"])
def test_series_and_elementwise_paths_train_the_same_network(schedule, monkeypatch):
    used = count_calls(monkeypatch, linear_series, "group_backward")
    # fully connected layers use the series evaluation when it is cheaper: results must agree
    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 1, 12, 12, generator=g, dtype=F64)
    y = torch.randint(0, 10, (48,), generator=g)
    arch = [specs.Flatten(), specs.Linear(128), specs.LeakyReLU(), specs.Linear(128)]
    arch += [specs.LeakyReLU(), specs.Linear(10), specs.Argmax()]
    predictions = []
    for fast in (True, False):
        net = Network(arch, (1, 12, 12), seed=0)
        for layer in net.weight_layers:
            layer.fast = fast
        Trainer(net, 24, schedule=schedule, seed=1).fit(x, y, epochs=3)
        predictions.append(net.predict(x[:16]))
    assert any(used)  # the series evaluation did take part
    assert torch.allclose(predictions[0], predictions[1], rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("schedule", ["sequential", "scaled"])
def test_compiled_and_eager_paths_give_the_same_predictions(schedule, dtype, monkeypatch):
    used = count_calls(monkeypatch, linear_fused, "group_backward")
    rtol, atol = (1e-9, 1e-12) if dtype == torch.float64 else (2e-4, 1e-6)
    # classification: class probabilities, hence accuracy, NLL and calibration
    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 1, 12, 12, generator=g, dtype=dtype)
    y = torch.randint(0, 10, (48,), generator=g)
    arch = [specs.Flatten(), specs.Linear(64), specs.LeakyReLU(), specs.Linear(64)]
    arch += [specs.LeakyReLU(), specs.Linear(10), specs.Argmax()]
    probabilities = []
    for compiled in (True, False):
        net = Network(arch, (1, 12, 12), seed=0, dtype=dtype)
        Trainer(net, 24, schedule=schedule, seed=1, compiled=compiled).fit(x, y, epochs=3)
        probabilities.append(net.predict(x[:16]))
    assert torch.allclose(probabilities[0], probabilities[1], rtol=rtol, atol=atol)
    # regression: predictive mean and variance inside and far outside the data
    data = make_sine(60, dtype=dtype)
    grid = torch.tensor([[-15.0], [-0.3], [0.0], [0.3], [15.0]], dtype=dtype)
    moments = []
    for compiled in (True, False):
        net = Network(specs.arch("toy_regression"), (1,), seed=0, dtype=dtype)
        trainer = Trainer(net, 200, schedule=schedule, compiled=compiled)
        trainer.fit(data.x_train, data.y_train, epochs=1, iterations=10)
        moments.append(net.predict(grid))
    for got, ref in zip(*moments, strict=True):
        assert torch.allclose(got, ref, rtol=rtol, atol=atol)
    assert any(used)  # the compiled kernel did take part


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("schedule", ["sequential", "scaled"])
def test_compiled_and_eager_paths_train_the_same_cnn(schedule, dtype, monkeypatch):
    positions = []
    original = linear_fused.group_backward

    def recording(fwd, *args, **kwargs):
        result = original(fwd, *args, **kwargs)
        positions.append(fwd.x_mean.shape[-2] if result is not None else 0)
        return result

    monkeypatch.setattr(linear_fused, "group_backward", recording)
    rtol, atol = (1e-9, 1e-12) if dtype == torch.float64 else (2e-4, 1e-6)
    arch = [specs.Conv2d(3, 3, padding=1), specs.LeakyReLU(), *SMALL_CNN]  # a hidden convolution
    x, y = image_data(48)
    probabilities = []
    for compiled in (True, False):
        net = Network(arch, (1, 6, 6), seed=0, dtype=dtype)
        Trainer(net, 24, schedule=schedule, seed=1, compiled=compiled).fit(x.to(dtype), y, epochs=3)
        probabilities.append(net.predict(x[:16].to(dtype)))
    assert torch.allclose(probabilities[0], probabilities[1], rtol=rtol, atol=atol)
    assert max(positions) == 36  # the convolutions' messages came from the compiled kernel


def test_prediction_shape_errors():
    net = Network(specs.arch("toy_regression"), (1,), seed=0)
    with pytest.raises(ValueError, match="input shape"):
        net.predict(torch.zeros(3, 2, dtype=F64))
    with pytest.raises(ValueError, match="output spec"):
        Network([specs.Linear(2)], (3,))
    with pytest.raises(ValueError, match="replicas"):
        Network(specs.arch("toy_regression"), (1,), replicas=0)


def test_parameter_counts_of_the_named_architectures():
    expected = {"toy_regression": 1153, "mlp": 269_322, "lenet5": 61_706, "conv890k": 890_410}
    for name, count in expected.items():
        net = Network(specs.arch(name), specs.default_input_shape(name), dtype=torch.float32)
        assert net.num_parameters() == count
