"""MaxPool factor (spec B.3.6): soft-argmax weights, weighted-sum forward, P2 backward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amp.factors import argmax, maxpool
from amp.gaussian import NatGaussian

G, C, H, W = 2, 3, 5, 7  # odd sizes: the last row and column are cropped for k = 2


def _inputs(dtype, seed=0, h=H, w=W):
    gen = torch.Generator().manual_seed(seed)
    mean = 2.0 * torch.randn(G, C, h, w, generator=gen, dtype=torch.float64)
    var = 0.05 + 2.0 * torch.rand(G, C, h, w, generator=gen, dtype=torch.float64)
    return NatGaussian.from_moments(mean, var).to(dtype)


def _windows(t: np.ndarray, k: int) -> dict[tuple[int, int, int, int], list[tuple[int, int]]]:
    """Pixel coordinates of every complete window, in row-major order inside the window."""
    g_n, c_n, h, w = t.shape
    return {
        (g, c, oh, ow): [(oh * k + ki, ow * k + kj) for ki in range(k) for kj in range(k)]
        for g in range(g_n)
        for c in range(c_n)
        for oh in range(h // k)
        for ow in range(w // k)
    }


def _reference(m_in: NatGaussian, m_back: NatGaussian, k: int, refs):
    """Weights, forward moments and backward messages, window by window."""
    mean, var = m_in.mean.double().numpy(), m_in.var.double().numpy()
    tau_b, rho_b = m_back.tau.double().numpy(), m_back.rho.double().numpy()
    h_out, w_out = mean.shape[2] // k, mean.shape[3] // k
    weights = np.zeros((*mean.shape[:2], h_out, w_out, k * k))
    out_mean, out_var = (
        np.zeros((*mean.shape[:2], h_out, w_out)),
        np.zeros((*mean.shape[:2], h_out, w_out)),
    )
    back_tau, back_rho = np.zeros_like(mean), np.zeros_like(mean)
    for (g, c, oh, ow), pixels in _windows(mean, k).items():
        mu = np.array([mean[g, c, r, s] for r, s in pixels])
        v = np.array([var[g, c, r, s] for r, s in pixels])
        p = refs.pairwise_probit_probs(mu, v, argmax.NOISE_VAR)
        weights[g, c, oh, ow] = p
        m_out = sum(p[j] * mu[j] for j in range(k * k))
        v_out = sum(p[j] ** 2 * v[j] for j in range(k * k))
        out_mean[g, c, oh, ow], out_var[g, c, oh, ow] = m_out, v_out
        tb, rb = tau_b[g, c, oh, ow], rho_b[g, c, oh, ow]
        for j, (r, s) in enumerate(pixels):
            den = 1 + rb * (v_out - p[j] ** 2 * v[j])
            back_rho[g, c, r, s] = p[j] ** 2 * rb / den
            back_tau[g, c, r, s] = p[j] * (tb - rb * (m_out - p[j] * mu[j])) / den
    return weights, out_mean, out_var, back_tau, back_rho


@pytest.mark.parametrize(("k", "h", "w"), [(2, H, W), (3, 6, 7), (2, 4, 4)])
def test_maxpool_matches_window_loops(k, h, w, dtype, tol, check, refs):
    m_in = _inputs(dtype, seed=k + h, h=h, w=w)
    gen = torch.Generator().manual_seed(99)
    shape = (G, C, h // k, w // k)
    m_back = NatGaussian.from_moments(
        torch.randn(shape, generator=gen, dtype=torch.float64),
        0.2 + torch.rand(shape, generator=gen, dtype=torch.float64),
    ).to(dtype)
    fwd = maxpool.to_output(m_in, k)
    back = maxpool.to_input(fwd, m_back)
    weights, out_mean, out_var, back_tau, back_rho = _reference(m_in, m_back, k, refs)
    assert back.shape == m_in.shape
    assert back.dtype == fwd.message().dtype == dtype
    check("maxpool weights vs pairwise probit", fwd.weights, weights, tol.exact, 1e-3)
    msg = fwd.message()
    check(
        "maxpool forward vs loops",
        [msg.mean, msg.var],
        [out_mean, out_var],
        tol.exact,
        [np.sqrt(out_var), 0],
    )
    scale = [np.abs(back_tau).max(), np.abs(back_rho).max()]
    check(
        "maxpool backward vs P2 loops", [back.tau, back.rho], [back_tau, back_rho], tol.exact, scale
    )
    cropped = torch.ones(h, w, dtype=torch.bool)
    cropped[: (h // k) * k, : (w // k) * k] = False
    if cropped.any():
        assert torch.all(back.tau[..., cropped] == 0)
        assert torch.all(back.rho[..., cropped] == 0)
    assert torch.all(back.rho[..., ~cropped] >= 0)  # p_j² may underflow in float32


def test_weights_pick_the_clear_maximum():
    mean = torch.tensor([[[[0.0, 50.0], [-3.0, 1.0]]]], dtype=torch.float64)
    fwd = maxpool.to_output(NatGaussian.from_moments(mean, torch.full_like(mean, 0.1)), 2)
    assert fwd.weights[0, 0, 0, 0].tolist() == pytest.approx([0.0, 1.0, 0.0, 0.0], abs=1e-12)
    assert fwd.message().mean.item() == pytest.approx(50.0)


def test_uniform_backward_message_gives_uniform_messages(dtype):
    m_in = _inputs(dtype)
    fwd = maxpool.to_output(m_in, 2)
    back = maxpool.to_input(fwd, NatGaussian.uniform((G, C, H // 2, W // 2), dtype=dtype))
    assert torch.equal(back.tau, torch.zeros_like(back.tau))
    assert torch.equal(back.rho, torch.zeros_like(back.rho))


def test_predict_is_the_forward_message(dtype):
    m_in = _inputs(dtype, seed=4)
    pred, msg = maxpool.predict(m_in, 2), maxpool.to_output(m_in, 2).message()
    assert torch.equal(pred.tau, msg.tau)
    assert torch.equal(pred.rho, msg.rho)


def test_leading_dimensions_are_independent(dtype):
    m_in = _inputs(dtype, seed=6)
    stacked = NatGaussian(torch.stack([m_in.tau, 2 * m_in.tau]), torch.stack([m_in.rho, m_in.rho]))
    fwd = maxpool.to_output(stacked, 2)
    m_back = NatGaussian.from_moments(
        torch.ones(2, G, C, H // 2, W // 2, dtype=dtype),
        torch.full((2, G, C, H // 2, W // 2), 0.5, dtype=dtype),
    )
    back = maxpool.to_input(fwd, m_back)
    for r in range(2):
        single = maxpool.to_output(stacked[r], 2)
        assert torch.equal(fwd.message()[r].tau, single.message().tau)
        single_back = maxpool.to_input(single, m_back[r])
        assert torch.equal(back[r].tau, single_back.tau)
        assert torch.equal(back[r].rho, single_back.rho)
