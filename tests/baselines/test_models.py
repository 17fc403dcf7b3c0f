from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from amp import specs
from baselines.models import (
    Likelihood,
    build_model,
    likelihood_of,
    symmetric_pad2d,
)

EXPECTED_PARAMETERS = {
    "conv890k": 890_410,
    "mlp": 269_322,
    "lenet5": 61_706,
    "toy_regression": 1_153,
    "mlp5m": 5_592_010,
}
DTYPES = [torch.float32, torch.float64]
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-12}


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMETERS))
def test_parameter_count_matches_specs(name):
    layers, shape = specs.arch(name), specs.default_input_shape(name)
    model = build_model(layers, shape, generator=_generator(0))
    count = sum(p.numel() for p in model.parameters())
    assert count == EXPECTED_PARAMETERS[name]
    assert count == specs.count_parameters(layers, shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMETERS))
def test_forward_shape_and_dtype(name, dtype):
    layers, shape = specs.arch(name), specs.default_input_shape(name)
    model = build_model(layers, shape, generator=_generator(0), dtype=dtype)
    out = model(torch.randn(3, *shape, generator=_generator(1), dtype=dtype))
    assert out.shape == (3, *specs.output_shapes(layers, shape)[-1])
    assert out.dtype == dtype
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_symmetric_pad_matches_numpy(dtype):
    x = torch.randn(2, 3, 4, 5, generator=_generator(0), dtype=dtype)
    for padding in range(5):
        expected = np.pad(
            x.numpy(), [(0, 0), (0, 0), (padding, padding), (padding, padding)], mode="symmetric"
        )
        np.testing.assert_array_equal(symmetric_pad2d(x, padding).numpy(), expected)


def test_symmetric_pad_includes_edge_pixel():
    row = torch.tensor([[[1.0, 2.0, 3.0]] * 3])
    assert symmetric_pad2d(row, 2)[0, 2].tolist() == [2.0, 1.0, 1.0, 2.0, 3.0, 3.0, 2.0]


def test_symmetric_pad_rejects_padding_beyond_image():
    with pytest.raises(ValueError, match="invalid padding"):
        symmetric_pad2d(torch.zeros(1, 1, 3, 4), 4)


def _numpy_forward(model, layers, x):
    """Independent float64 NumPy forward pass from the module's parameters."""
    weights = [m for m in model if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)]
    a = x.numpy().astype(np.float64)
    for layer in layers:
        if isinstance(layer, specs.Conv2d):
            module = weights.pop(0)
            w, b = module.weight.detach().double().numpy(), module.bias.detach().double().numpy()
            p = layer.padding
            pad = [(0, 0), (0, 0), (p, p), (p, p)]
            a = np.pad(
                a, pad, mode="symmetric" if layer.padding_mode == "symmetric" else "constant"
            )
            windows = sliding_window_view(a, w.shape[-2:], axis=(2, 3))  # N, C, H', W', k, k
            a = np.einsum("nchwij,ocij->nohw", windows, w) + b[None, :, None, None]
        elif isinstance(layer, specs.Linear):
            module = weights.pop(0)
            a = (
                a @ module.weight.detach().double().numpy().T
                + module.bias.detach().double().numpy()
            )
        elif isinstance(layer, specs.LeakyReLU):
            a = np.where(a > 0, a, layer.leak * a)
        elif isinstance(layer, specs.MaxPool2d):
            k = layer.kernel_size
            n, c, h, w = a.shape
            a = a[:, :, : h // k * k, : w // k * k].reshape(n, c, h // k, k, w // k, k).max((3, 5))
        elif isinstance(layer, specs.Flatten):
            a = a.reshape(len(a), -1)
    return a


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padding_mode", ["symmetric", "zeros"])
def test_forward_matches_numpy_reference(padding_mode, dtype):
    layers = (
        specs.Conv2d(3, 3, padding=2, padding_mode=padding_mode),
        specs.LeakyReLU(0.2),
        specs.MaxPool2d(2),  # 7x7 -> 3x3: the incomplete window is dropped
        specs.Conv2d(4, 2, padding=1, padding_mode=padding_mode),
        specs.LeakyReLU(),
        specs.Flatten(),
        specs.Linear(5),
        specs.LeakyReLU(),
        specs.Linear(3),
        specs.Softmax(),
    )
    model = build_model(layers, (2, 5, 5), generator=_generator(3), dtype=dtype)
    x = torch.randn(4, 2, 5, 5, generator=_generator(4), dtype=dtype)
    expected = _numpy_forward(model, layers, x)
    np.testing.assert_allclose(
        model(x).detach().double().numpy(), expected, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype]
    )


def test_symmetric_and_zero_padding_differ():
    conv = dict(out_channels=2, kernel_size=3, padding=1)
    x = torch.rand(2, 1, 4, 4, generator=_generator(0)) + 1.0
    outs = [
        build_model(
            (
                specs.Conv2d(**conv, padding_mode=mode),
                specs.Flatten(),
                specs.Linear(1),
                specs.Regression(1.0),
            ),
            (1, 4, 4),
            generator=_generator(0),
        )(x)
        for mode in ("symmetric", "zeros")
    ]
    assert not torch.allclose(*outs)


def test_seeded_init_is_reproducible_and_seed_dependent():
    layers, shape = specs.arch("lenet5"), (1, 28, 28)
    state = torch.get_rng_state()
    a = build_model(layers, shape, generator=_generator(7)).state_dict()
    b = build_model(layers, shape, generator=_generator(7)).state_dict()
    c = build_model(layers, shape, generator=_generator(8)).state_dict()
    assert torch.equal(torch.get_rng_state(), state), "global random state was touched"
    for key in a:
        assert torch.equal(a[key], b[key])
        assert not torch.equal(a[key], c[key])


def test_default_generator_is_seed_zero():
    layers, shape = specs.arch("mlp"), (1, 28, 28)
    a = build_model(layers, shape).state_dict()
    b = build_model(layers, shape, generator=_generator(0)).state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_init_follows_torch_default_uniform_bounds():
    model = build_model(specs.arch("lenet5"), (1, 28, 28), generator=_generator(0))
    for module in model:
        if isinstance(module, torch.nn.Linear | torch.nn.Conv2d):
            fan_in = module.weight[0].numel()  # in_features or in_channels * k * k
            bound = 1 / math.sqrt(fan_in)
            w = module.weight.detach()
            assert w.abs().max() <= bound
            assert module.bias.detach().abs().max() <= bound
            if w.numel() > 10_000:  # uniform(-b, b) has standard deviation b / sqrt(3)
                assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.03)
                assert w.abs().max().item() > 0.99 * bound


def test_likelihood_of():
    assert likelihood_of(specs.arch("conv890k")) == Likelihood("classification", None)
    assert likelihood_of((specs.Linear(2), specs.Softmax())).kind == "classification"
    assert likelihood_of(specs.arch("toy_regression")) == Likelihood("regression", 0.05**2)
    with pytest.raises(ValueError, match="not an output spec"):
        likelihood_of((specs.Linear(2),))
    with pytest.raises(ValueError, match="not an output spec"):
        build_model((specs.Linear(2), specs.LeakyReLU()), (3,))
