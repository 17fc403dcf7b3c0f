"""The compiled fully connected messages against the eager elementwise reference."""

import pytest
import torch

from amp import runtime
from amp.factors import linear, linear_fused
from amp.gaussian import NatGaussian
from tests.factors.test_linear_series import per_example_weights, random_layer, relative_error

TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-5}
"""Both evaluate the same formulas; only the order of the sums differs."""


def reference(fwd, m_back, *, hidden, per_example):
    terms = linear.term_messages(fwd, m_back)
    to_weight = linear.to_weight(fwd, terms, reduce_examples=not per_example)
    if not per_example:
        to_weight = to_weight.take(-3, 0)
    return to_weight, linear.to_input(fwd, terms) if hidden else None


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("hidden", [False, True])
@pytest.mark.parametrize("lead", [(), (3,)])
@pytest.mark.parametrize("per_example", [False, True])
def test_compiled_equals_elementwise_messages(dtype, hidden, lead, per_example):
    # the outlier input makes ratios r close to 1, where the series needs the exact evaluation
    fwd, m_back = random_layer(dtype, hidden=hidden, lead=lead, outlier=True, d_in=200)
    fused = linear_fused.group_backward(fwd, m_back, with_input=hidden, per_example=per_example)
    assert fused is not None, "the kernel did not compile"
    assert fused.order == linear_fused.FUSED_ORDER
    ref_w, ref_x = reference(fwd, m_back, hidden=hidden, per_example=per_example)
    assert fused.to_weight.shape == ref_w.shape
    tol = TOLERANCE[dtype]
    assert relative_error(fused.to_weight.tau, ref_w.tau) < tol
    assert relative_error(fused.to_weight.rho, ref_w.rho) < tol
    if hidden:
        assert fused.to_input.shape == ref_x.shape
        assert relative_error(fused.to_input.tau, ref_x.tau) < tol
        assert relative_error(fused.to_input.rho, ref_x.rho) < tol
    else:
        assert fused.to_input is None


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("per_example", [False, True])
def test_compiled_equals_elementwise_messages_over_positions(dtype, per_example):
    # convolutions: every output position of an example is one term of the weights' messages
    fwd, m_back = random_layer(dtype, hidden=True, g=4, d_in=45, d_out=6, positions=9)
    fused = linear_fused.group_backward(fwd, m_back, with_input=True, per_example=per_example)
    ref_w, ref_x = reference(fwd, m_back, hidden=True, per_example=per_example)
    assert fused.to_weight.shape == ref_w.shape
    assert fused.to_input.shape == ref_x.shape == (4, 9, 45)
    tol = TOLERANCE[dtype]
    for got, ref in ((fused.to_weight, ref_w), (fused.to_input, ref_x)):
        assert relative_error(got.tau, ref.tau) < tol
        assert relative_error(got.rho, ref.rho) < tol


def test_one_kernel_serves_every_size():
    for g, d_in, d_out in ((8, 50, 20), (3, 17, 5), (16, 120, 7)):
        fwd, m_back = random_layer(torch.float64, hidden=True, g=g, d_in=d_in, d_out=d_out)
        fused = linear_fused.group_backward(fwd, m_back, with_input=True)
        ref_w, ref_x = reference(fwd, m_back, hidden=True, per_example=False)
        assert relative_error(fused.to_weight.rho, ref_w.rho) < 1e-12
        assert relative_error(fused.to_input.tau, ref_x.tau) < 1e-12


def test_uniform_backward_messages_give_uniform_messages():
    fwd, m_back = random_layer(torch.float64, hidden=True)
    uniform = NatGaussian.uniform(m_back.shape, dtype=torch.float64)
    fused = linear_fused.group_backward(fwd, uniform, with_input=True)
    assert fused.to_weight.is_uniform().all()
    assert fused.to_input.is_uniform().all()


def test_weights_per_example_are_declined():
    fwd, m_back = random_layer(torch.float64, hidden=False)
    per_example = per_example_weights(fwd)
    assert linear_fused.group_backward(per_example, m_back, with_input=False) is None


def test_a_failed_compilation_falls_back_once(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(runtime, "_kernels", {linear_fused.messages: broken})
    monkeypatch.setattr(runtime, "_compile_failed", False)
    fwd, m_back = random_layer(torch.float64, hidden=True)
    assert linear_fused.group_backward(fwd, m_back, with_input=True) is None
    assert "no C++ compiler" in caplog.text
    assert not runtime.compiled_kernels_available()
