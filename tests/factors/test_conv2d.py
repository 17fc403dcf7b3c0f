"""2-D convolution factor (spec B.3.3, B.3.4) against the fully connected factor on patches.

The reference pads with ``numpy.pad``, cuts the patches with explicit loops (channel-major
``j = c·k·k + ki·k + kj``, positions row-major), runs :mod:`amp.factors.linear` on them one
position at a time, multiplies the kernel and bias messages over positions (sums of natural
parameters) and scatters the patch messages back onto the source pixels of the padded image.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amp.factors import conv2d, linear
from amp.gaussian import NatGaussian

G, C_IN, H, W, K, C_OUT = 2, 2, 5, 4, 3, 2
MODES = {"zeros": "constant", "symmetric": "symmetric"}


def _gaussians(gen, shape, dtype, mean_scale=1.0, var_range=(0.1, 1.5)):
    mean = mean_scale * torch.randn(shape, generator=gen, dtype=torch.float64)
    var = var_range[0] + (var_range[1] - var_range[0]) * torch.rand(
        shape, generator=gen, dtype=torch.float64
    )
    return NatGaussian.from_moments(mean, var).to(dtype)


# --------------------------------------------------------------------------------- padding
def test_symmetric_padding_repeats_the_edge():
    t = torch.tensor([[[[1.0, 2.0, 3.0]]]])
    padded = conv2d.pad(t.expand(1, 1, 3, 3), 2, "symmetric")
    assert padded[0, 0, 2].tolist() == [2.0, 1.0, 1.0, 2.0, 3.0, 3.0, 2.0]
    assert conv2d.symmetric_index(3, 2).tolist() == [1, 0, 0, 1, 2, 2, 1]


@pytest.mark.parametrize("mode", ["zeros", "symmetric"])
@pytest.mark.parametrize("padding", [0, 1, 2, 4])
def test_pad_matches_numpy(mode, padding, dtype):
    gen = torch.Generator().manual_seed(padding)
    t = torch.randn(2, 3, 4, 5, generator=gen, dtype=torch.float64).to(dtype)
    ref = np.pad(t.numpy(), ((0, 0), (0, 0), (padding,) * 2, (padding,) * 2), mode=MODES[mode])
    got = conv2d.pad(t, padding, mode)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got.numpy(), ref)


@pytest.mark.parametrize("mode", ["zeros", "symmetric"])
@pytest.mark.parametrize("padding", [1, 2, 4])
def test_pad_adjoint_is_the_transpose(mode, padding):
    gen = torch.Generator().manual_seed(10 + padding)
    a = torch.randn(2, 3, 4, 5, generator=gen, dtype=torch.float64)
    b = torch.randn(2, 3, 4 + 2 * padding, 5 + 2 * padding, generator=gen, dtype=torch.float64)
    lhs = (conv2d.pad(a, padding, mode) * b).sum()
    rhs = (a * conv2d.pad_adjoint(b, padding, mode)).sum()
    assert lhs.item() == pytest.approx(rhs.item(), rel=1e-12)


def test_symmetric_padding_wider_than_the_image_is_rejected():
    with pytest.raises(ValueError, match="symmetric padding"):
        conv2d.pad(torch.zeros(1, 1, 3, 3), 4, "symmetric")


def test_unknown_padding_mode_is_rejected():
    with pytest.raises(ValueError, match="mode"):
        conv2d.pad(torch.zeros(1, 1, 3, 3), 1, "reflect")


# ------------------------------------------------------------------------------ reference
def _source_index(size: int, padding: int, mode: str) -> np.ndarray:
    """Source pixel of every padded position (-1: a constant zero)."""
    if mode == "zeros":
        return np.pad(np.arange(size), padding, mode="constant", constant_values=-1)
    return np.pad(np.arange(size), padding, mode="symmetric")


def _patches(img: np.ndarray, padding: int, mode: str) -> np.ndarray:
    """``(G, C, H, W)`` → ``(G, P, C·K·K)`` by loops over positions and kernel entries."""
    padded = np.pad(img, ((0, 0), (0, 0), (padding,) * 2, (padding,) * 2), mode=MODES[mode])
    h_out, w_out = padded.shape[2] - K + 1, padded.shape[3] - K + 1
    out = np.zeros((img.shape[0], h_out * w_out, img.shape[1] * K * K))
    for oh in range(h_out):
        for ow in range(w_out):
            for c in range(img.shape[1]):
                for ki in range(K):
                    for kj in range(K):
                        out[:, oh * w_out + ow, c * K * K + ki * K + kj] = padded[
                            :, c, oh + ki, ow + kj
                        ]
    return out


def _fold(msg: np.ndarray, padding: int, mode: str) -> np.ndarray:
    """Scatter ``(G, P, C·K·K)`` patch messages onto the source pixels ``(G, C, H, W)``."""
    rows, cols = _source_index(H, padding, mode), _source_index(W, padding, mode)
    h_out, w_out = H + 2 * padding - K + 1, W + 2 * padding - K + 1
    out = np.zeros((msg.shape[0], C_IN, H, W))
    for oh in range(h_out):
        for ow in range(w_out):
            for c in range(C_IN):
                for ki in range(K):
                    for kj in range(K):
                        r, s = rows[oh + ki], cols[ow + kj]
                        if r >= 0 and s >= 0:
                            out[:, c, r, s] += msg[:, oh * w_out + ow, c * K * K + ki * K + kj]
    return out


def _to_positions(m: NatGaussian) -> NatGaussian:
    """``(G, C, Ho, Wo)`` → ``(G, P, C)`` with positions row-major."""
    return NatGaussian(m.tau.flatten(2).transpose(1, 2), m.rho.flatten(2).transpose(1, 2))


def _case(dtype, *, hidden: bool, per_example: bool, padding: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    x = _gaussians(gen, (G, C_IN, H, W), dtype, var_range=(0.1, 1.0))
    x_mean, x_var = x.mean, (x.var if hidden else None)
    w = _gaussians(gen, (G, C_IN * K * K, C_OUT) if per_example else (C_IN * K * K, C_OUT), dtype)
    b = _gaussians(gen, (G, C_OUT) if per_example else (C_OUT,), dtype)
    h_out, w_out = H + 2 * padding - K + 1, W + 2 * padding - K + 1
    m_back = _gaussians(gen, (G, C_OUT, h_out, w_out), dtype, mean_scale=3.0)
    return x_mean, x_var, w, b, m_back


CASES = [
    (hidden, per_example, padding, mode)
    for hidden in (False, True)
    for per_example in (False, True)
    for padding, mode in [
        (0, "symmetric"),
        (1, "zeros"),
        (2, "zeros"),
        (1, "symmetric"),
        (2, "symmetric"),
    ]
]


def _id(case):
    hidden, per_example, padding, mode = case
    return f"{'hidden' if hidden else 'first'}-{'per' if per_example else 'shared'}-{mode}{padding}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_conv_messages_equal_the_linear_factor_on_explicit_patches(case, dtype, tol, check):
    hidden, per_example, padding, mode = case
    x_mean, x_var, w, b, m_back = _case(
        dtype, hidden=hidden, per_example=per_example, padding=padding, seed=CASES.index(case)
    )
    fwd = conv2d.to_output(x_mean, x_var, w, b, kernel_size=K, padding=padding, mode=mode)
    terms = conv2d.term_messages(fwd, m_back)
    to_w, to_b = conv2d.to_weight(fwd, terms), conv2d.to_bias(fwd, m_back)

    pm = torch.tensor(_patches(x_mean.double().numpy(), padding, mode), dtype=dtype)
    pv = (
        None
        if x_var is None
        else torch.tensor(_patches(x_var.double().numpy(), padding, mode), dtype=dtype)
    )
    back = _to_positions(m_back)
    n_pos = pm.shape[1]

    # every position is its own fully connected factor: fold positions into the example axis
    def per_position(t: torch.Tensor, dims: int) -> torch.Tensor:
        return t.repeat_interleave(n_pos, dim=0) if t.dim() == dims else t

    def flat(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(G * n_pos, 1, t.shape[-1])

    w_pos = NatGaussian(per_position(w.tau, 3), per_position(w.rho, 3))
    b_pos = NatGaussian(per_position(b.tau, 2), per_position(b.rho, 2))
    lin = linear.to_output(flat(pm), None if pv is None else flat(pv), w_pos, b_pos)
    back_pos = NatGaussian(flat(back.tau), flat(back.rho))
    lin_terms = linear.term_messages(lin, back_pos)
    out_ref = lin.message().reshape(G, n_pos, C_OUT)
    ref_w = linear.to_weight(lin, lin_terms).reshape(G, n_pos, C_IN * K * K, C_OUT)
    ref_b = linear.to_bias(lin, back_pos).reshape(G, n_pos, C_OUT)
    out_pos = _to_positions(fwd.message())
    scale = [out_ref.tau.abs().max(), out_ref.rho.abs().max()]
    check(
        "conv forward vs linear on patches",
        [out_pos.tau, out_pos.rho],
        [out_ref.tau, out_ref.rho],
        tol.exact,
        scale,
    )
    w_tau, w_rho = ref_w.tau.sum(1), ref_w.rho.sum(1)  # weight sharing: product over positions
    check(
        "conv to_weight vs linear on patches",
        [to_w.tau, to_w.rho],
        [w_tau, w_rho],
        tol.exact,
        [w_tau.abs().max(), w_rho.abs().max()],
    )
    b_tau, b_rho = ref_b.tau.sum(1), ref_b.rho.sum(1)
    check(
        "conv to_bias vs linear on patches",
        [to_b.tau, to_b.rho],
        [b_tau, b_rho],
        tol.exact,
        [b_tau.abs().max(), b_rho.abs().max()],
    )
    if hidden:
        to_x = conv2d.to_input(fwd, terms)
        patch_msg = linear.to_input(lin, lin_terms).reshape(G, n_pos, C_IN * K * K)
        x_tau = _fold(patch_msg.tau.double().numpy(), padding, mode)
        x_rho = _fold(patch_msg.rho.double().numpy(), padding, mode)
        assert to_x.shape == (G, C_IN, H, W)
        check(
            "conv to_input vs folded linear",
            [to_x.tau, to_x.rho],
            [x_tau, x_rho],
            tol.exact,
            [np.abs(x_tau).max(), np.abs(x_rho).max()],
        )


@pytest.mark.parametrize("mode", ["zeros", "symmetric"])
def test_first_conv_forward_mean_is_a_cross_correlation(mode, dtype, tol, check):
    x_mean, _, w, b, _ = _case(dtype, hidden=False, per_example=False, padding=1, seed=5)
    fwd = conv2d.to_output(x_mean, None, w, b, kernel_size=K, padding=1, mode=mode)
    padded = np.pad(x_mean.double().numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)), mode=MODES[mode])
    kernel = w.mean.double().T.reshape(C_OUT, C_IN, K, K)
    ref = torch.nn.functional.conv2d(torch.tensor(padded), kernel, bias=b.mean.double())
    check("conv forward mean vs conv2d", fwd.message().mean, ref, tol.exact, ref.abs().max())


@pytest.mark.parametrize("hidden", [False, True], ids=["first", "hidden"])
def test_uniform_backward_message_gives_uniform_messages(hidden, dtype):
    x_mean, x_var, w, b, m_back = _case(dtype, hidden=hidden, per_example=False, padding=1, seed=3)
    fwd = conv2d.to_output(x_mean, x_var, w, b, kernel_size=K, padding=1, mode="symmetric")
    uniform = NatGaussian.uniform(m_back.shape, dtype=dtype)
    terms = conv2d.term_messages(fwd, uniform)
    msgs = [conv2d.to_weight(fwd, terms), conv2d.to_bias(fwd, uniform)]
    if hidden:
        msgs.append(conv2d.to_input(fwd, terms))
    for msg in msgs:
        assert torch.equal(msg.tau, torch.zeros_like(msg.tau))
        assert torch.equal(msg.rho, torch.zeros_like(msg.rho))


def test_predict_is_the_forward_message(dtype):
    x_mean, x_var, w, b, _ = _case(dtype, hidden=True, per_example=False, padding=2, seed=9)
    kw = {"kernel_size": K, "padding": 2, "mode": "symmetric"}
    pred = conv2d.predict(x_mean, x_var, w, b, **kw)
    msg = conv2d.to_output(x_mean, x_var, w, b, **kw).message()
    assert torch.equal(pred.tau, msg.tau)
    assert torch.equal(pred.rho, msg.rho)
    assert pred.shape == (G, C_OUT, H + 4 - K + 1, W + 4 - K + 1)


@pytest.mark.parametrize("hidden", [False, True], ids=["first", "hidden"])
def test_several_networks_at_once_equal_one_at_a_time(hidden, dtype):
    """Inputs ``(R, G, C, H, W)`` with kernels ``(R, 1, J, C_out)``: R independent networks."""
    nets = [
        _case(dtype, hidden=hidden, per_example=False, padding=1, seed=40 + r) for r in range(2)
    ]

    def stack(parts):
        return None if parts[0] is None else torch.stack(parts)

    def stack_nat(parts, shape):
        return NatGaussian(
            torch.stack([p.tau for p in parts]).reshape(shape),
            torch.stack([p.rho for p in parts]).reshape(shape),
        )

    kw = {"kernel_size": K, "padding": 1, "mode": "symmetric"}
    w = stack_nat([n[2] for n in nets], (2, 1, C_IN * K * K, C_OUT))
    b = stack_nat([n[3] for n in nets], (2, 1, C_OUT))
    m_back = stack_nat([n[4] for n in nets], (2, *nets[0][4].shape))
    fwd = conv2d.to_output(stack([n[0] for n in nets]), stack([n[1] for n in nets]), w, b, **kw)
    terms = conv2d.term_messages(fwd, m_back)
    for r, (x_mean, x_var, wr, br, mr) in enumerate(nets):
        f = conv2d.to_output(x_mean, x_var, wr, br, **kw)
        t = conv2d.term_messages(f, mr)
        pairs = [
            (fwd.message()[r], f.message()),
            (conv2d.to_weight(fwd, terms)[r], conv2d.to_weight(f, t)),
            (
                conv2d.to_bias(fwd, m_back, reduce_examples=True)[r, 0],
                conv2d.to_bias(f, mr, reduce_examples=True),
            ),
        ]
        if hidden:
            pairs.append((conv2d.to_input(fwd, terms)[r], conv2d.to_input(f, t)))
        rtol = 1e-12 if dtype == torch.float64 else 1e-5
        for mine, ref in pairs:
            torch.testing.assert_close(mine.tau, ref.tau, rtol=rtol, atol=rtol)
            torch.testing.assert_close(mine.rho, ref.rho, rtol=rtol, atol=rtol)
