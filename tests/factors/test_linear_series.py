"""The series evaluation of fully connected messages against the elementwise reference."""

import pytest
import torch

from amp.factors import conv2d, linear, linear_series
from amp.gaussian import NatGaussian

TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-4}


def random_layer(
    dtype, *, hidden, lead=(), g=8, d_in=600, d_out=20, seed=0, outlier=False, positions=1
):
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.rand(*shape, generator=gen, dtype=torch.float64)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    x = randn(*lead, g, positions, d_in) * 0.6
    if outlier:  # one input with a large second moment: its rows need the exact evaluation
        x[..., 3] = 30.0
    x_var = rand(*lead, g, positions, d_in) * 0.1 if hidden else None
    w = NatGaussian.from_moments(
        randn(*lead, 1, d_in, d_out) * 0.1, rand(*lead, 1, d_in, d_out) * 0.004 + 0.001
    )
    b = NatGaussian.from_moments(torch.zeros(*lead, 1, d_out), torch.full((*lead, 1, d_out), 0.5))
    m_back = NatGaussian.from_moments(
        randn(*lead, g, positions, d_out), rand(*lead, g, positions, d_out) + 0.1
    )
    cast = lambda t: None if t is None else t.to(dtype)  # noqa: E731
    fwd = linear.to_output(cast(x), cast(x_var), w.to(dtype), b.to(dtype))
    return fwd, m_back.to(dtype)


def relative_error(got, ref):
    return float((got.double() - ref.double()).abs().max() / ref.double().abs().max())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("hidden", [False, True])
@pytest.mark.parametrize("lead", [(), (3,)])
@pytest.mark.parametrize("outlier", [False, True])
def test_series_equals_elementwise_messages(dtype, hidden, lead, outlier):
    fwd, m_back = random_layer(dtype, hidden=hidden, lead=lead, outlier=outlier)
    fast = linear_series.group_backward(fwd, m_back, with_input=hidden)
    assert fast is not None
    terms = linear.term_messages(fwd, m_back)
    ref_w = linear.to_weight(fwd, terms, reduce_examples=True).take(-3, 0)
    tol = TOLERANCE[dtype]
    assert relative_error(fast.to_weight.tau, ref_w.tau) < tol
    assert relative_error(fast.to_weight.rho, ref_w.rho) < tol
    if hidden:
        ref_x = linear.to_input(fwd, terms)
        assert relative_error(fast.to_input.tau, ref_x.tau) < tol
        assert relative_error(fast.to_input.rho, ref_x.rho) < tol


def test_series_declines_when_most_rows_need_the_exact_evaluation():
    fwd, m_back = random_layer(torch.float64, hidden=True, d_in=8, g=1)
    # a narrow layer with a single example: the ratios are large and the budget is small
    fwd = linear.LinearForward(
        fwd.x_mean * 20,
        fwd.x_var,
        fwd.w_mean,
        fwd.w_var,
        fwd.b_mean,
        fwd.b_var,
        fwd.out_mean,
        fwd.out_var,
    )
    assert linear_series.group_backward(fwd, m_back, with_input=True) is None


def per_example_weights(fwd):
    """The same forward pass with one copy of the weights per example (cavities)."""
    return linear.LinearForward(
        fwd.x_mean,
        None,
        fwd.w_mean.expand(8, -1, -1).clone(),
        fwd.w_var.expand(8, -1, -1).clone(),
        fwd.b_mean,
        fwd.b_var,
        fwd.out_mean,
        fwd.out_var,
    )


def test_weights_per_example_are_not_for_the_series():
    fwd, m_back = random_layer(torch.float64, hidden=False)
    per_example = per_example_weights(fwd)
    assert linear_series.group_backward(per_example, m_back, with_input=False) is None


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("hidden", [False, True])
@pytest.mark.parametrize("per_example", [False, True])
def test_series_equals_elementwise_messages_of_a_convolution(dtype, hidden, per_example):
    # the rows of a convolution are (example, position) pairs sharing one kernel
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(6, 1, 10, 10, generator=gen, dtype=torch.float64).to(dtype)
    x_var = torch.rand(6, 1, 10, 10, generator=gen, dtype=torch.float64).to(dtype) * 0.2
    w = NatGaussian.from_moments(
        torch.randn(1, 9, 32, generator=gen, dtype=torch.float64) * 0.2,
        torch.rand(1, 9, 32, generator=gen, dtype=torch.float64) * 0.002 + 0.001,
    ).to(dtype)
    b = NatGaussian.from_moments(torch.zeros(1, 32), torch.full((1, 32), 0.5)).to(dtype)
    fwd = conv2d.to_output(x, x_var if hidden else None, w, b, kernel_size=3, padding=1)
    m_back = NatGaussian.from_moments(
        torch.randn(6, 32, 10, 10, generator=gen, dtype=torch.float64),
        torch.rand(6, 32, 10, 10, generator=gen, dtype=torch.float64) + 0.5,
    ).to(dtype)
    fast = linear_series.group_backward(
        fwd.linear, conv2d.positions(m_back), with_input=hidden, per_example=per_example
    )
    assert fast is not None
    terms = conv2d.term_messages(fwd, m_back)
    ref_w = conv2d.to_weight(fwd, terms, reduce_examples=not per_example)
    if not per_example:
        ref_w = ref_w.take(-3, 0)
    tol = TOLERANCE[dtype]
    assert relative_error(fast.to_weight.tau, ref_w.tau) < tol
    assert relative_error(fast.to_weight.rho, ref_w.rho) < tol
    if hidden:
        ref_x = conv2d.to_input(fwd, terms)
        got_x = conv2d.fold_patches(fwd, fast.to_input)
        assert relative_error(got_x.tau, ref_x.tau) < tol
        assert relative_error(got_x.rho, ref_x.rho) < tol
