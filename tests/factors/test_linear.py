"""Fully connected product-sum factor (spec B.3.1, B.3.2).

First layer (deterministic inputs): every message is an exact EP message, so it must equal the
posterior marginal of Bayesian linear regression (dense linear algebra on the joint Gaussian of
the weights, bias and the observed sum) divided by the cavity. Hidden layer (Gaussian inputs):
forward moments against Monte Carlo, messages against the VMP formulas written out as loops.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amp.factors import linear
from amp.gaussian import NatGaussian

G, D_IN, D_OUT = 3, 4, 2


def _gaussians(gen: torch.Generator, shape, dtype, mean_scale=1.0, var_range=(0.05, 2.0)):
    mean = mean_scale * torch.randn(shape, generator=gen, dtype=torch.float64)
    lo, hi = var_range
    var = lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=torch.float64)
    return NatGaussian.from_moments(mean, var).to(dtype)


def _setup(dtype, *, per_example: bool, seed: int = 0, positions: int = 1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(G, positions, D_IN, generator=gen, dtype=torch.float64)
    x[0, 0, 1] = 0.0  # a zero input: its weights get a uniform message
    w_shape = (G, D_IN, D_OUT) if per_example else (D_IN, D_OUT)
    w = _gaussians(gen, w_shape, dtype)
    b = _gaussians(gen, (G, D_OUT) if per_example else (D_OUT,), dtype)
    m_back = _gaussians(gen, (G, positions, D_OUT), dtype, mean_scale=3.0, var_range=(0.1, 1.0))
    return x.to(dtype), w, b, m_back


def _np(t: torch.Tensor) -> np.ndarray:
    return t.double().numpy()


def _per_example(t: np.ndarray, g: int, per_example: bool) -> np.ndarray:
    return t[g] if per_example else t


# -------------------------------------------------------------------------------- first layer
def _regression_messages(x, w_mean, w_var, b_mean, b_var, y, noise):
    """Messages to (w_1..w_D, b) of ``y = xᵀw + b + e`` by conditioning the joint Gaussian."""
    design = np.append(x, 1.0)
    prior_mean = np.append(w_mean, b_mean)
    prior_var = np.append(w_var, b_var)
    precision = np.diag(1 / prior_var) + np.outer(design, design) / noise
    post_cov = np.linalg.inv(precision)
    post_mean = post_cov @ (prior_mean / prior_var + design * y / noise)
    post_var = np.diag(post_cov)
    tau = post_mean / post_var - prior_mean / prior_var
    rho = 1 / post_var - 1 / prior_var
    scale = (np.abs(post_mean / post_var) + np.sqrt(1 / post_var), 1 / post_var)
    return tau, rho, scale


@pytest.mark.parametrize("per_example", [False, True], ids=["shared", "per-example"])
def test_first_layer_messages_are_exact_conditioning(per_example, dtype, tol, check):
    x, w, b, m_back = _setup(dtype, per_example=per_example)
    fwd = linear.to_output(x, None, w, b)
    to_w = linear.to_weight(fwd, linear.term_messages(fwd, m_back))
    to_b = linear.to_bias(fwd, m_back)
    assert to_w.shape == (G, D_IN, D_OUT)
    assert to_b.shape == (G, D_OUT)
    assert to_w.dtype == to_b.dtype == dtype
    wm, wv, bm, bv = _np(w.mean), _np(w.var), _np(b.mean), _np(b.var)
    y, noise = _np(m_back.mean), _np(m_back.var)
    got_w, ref_w, sc_w, got_b, ref_b, sc_b = [], [], [], [], [], []
    for g in range(G):
        for j in range(D_OUT):
            tau, rho, scale = _regression_messages(
                _np(x)[g, 0],
                _per_example(wm, g, per_example)[:, j],
                _per_example(wv, g, per_example)[:, j],
                _per_example(bm, g, per_example)[j],
                _per_example(bv, g, per_example)[j],
                y[g, 0, j],
                noise[g, 0, j],
            )
            got_w.append([_np(to_w.tau)[g, :, j], _np(to_w.rho)[g, :, j]])
            ref_w.append([tau[:-1], rho[:-1]])
            sc_w.append([scale[0][:-1], scale[1][:-1]])
            got_b.append([_np(to_b.tau)[g, j], _np(to_b.rho)[g, j]])
            ref_b.append([tau[-1], rho[-1]])
            sc_b.append([scale[0][-1], scale[1][-1]])
    check("linear first to_weight vs conditioning", got_w, ref_w, tol.exact, sc_w)
    check("linear first to_bias vs conditioning", got_b, ref_b, tol.exact, sc_b)
    assert torch.all(to_w.tau[0, 1] == 0)  # zero input -> uniform message to its weights
    assert torch.all(to_w.rho[0, 1] == 0)


@pytest.mark.parametrize("per_example", [False, True], ids=["shared", "per-example"])
def test_first_layer_forward_is_the_prior_predictive(per_example, dtype, tol, check):
    x, w, b, _ = _setup(dtype, per_example=per_example, seed=1)
    fwd = linear.to_output(x, None, w, b)
    msg = fwd.message()
    wm, wv, bm, bv = _np(w.mean), _np(w.var), _np(b.mean), _np(b.var)
    ref_mean, ref_var = np.zeros((G, 1, D_OUT)), np.zeros((G, 1, D_OUT))
    for g in range(G):
        design = np.append(_np(x)[g, 0], 1.0)
        for j in range(D_OUT):
            mean = np.append(
                _per_example(wm, g, per_example)[:, j], _per_example(bm, g, per_example)[j]
            )
            var = np.append(
                _per_example(wv, g, per_example)[:, j], _per_example(bv, g, per_example)[j]
            )
            ref_mean[g, 0, j] = design @ mean
            ref_var[g, 0, j] = design @ np.diag(var) @ design
    check(
        "linear first forward",
        [msg.mean, msg.var],
        [ref_mean, ref_var],
        tol.exact,
        [np.sqrt(ref_var), 0],
    )
    pred = linear.predict(x, None, w, b)
    assert torch.equal(pred.tau, msg.tau)
    assert torch.equal(pred.rho, msg.rho)


@pytest.mark.parametrize("per_example", [False, True], ids=["shared", "per-example"])
def test_reduce_examples_multiplies_the_messages_of_examples_sharing_weights(
    per_example, dtype, tol, check
):
    x, w, b, m_back = _setup(dtype, per_example=per_example, seed=2)
    fwd = linear.to_output(x, None, w, b)
    terms = linear.term_messages(fwd, m_back)
    pairs = [
        (linear.to_weight(fwd, terms), linear.to_weight(fwd, terms, reduce_examples=True)),
        (linear.to_bias(fwd, m_back), linear.to_bias(fwd, m_back, reduce_examples=True)),
    ]
    for name, (each, total) in zip(["weight", "bias"], pairs, strict=True):
        # shared weights: product over the examples; per-example cavities share nothing
        ref = each if per_example else each.sum(0)
        assert total.shape == ref.shape
        check(
            f"linear reduce_examples {name}",
            [total.tau, total.rho],
            [ref.tau, ref.rho],
            tol.exact,
            1.0,
        )


@pytest.mark.parametrize("hidden", [False, True], ids=["first", "hidden"])
def test_several_networks_at_once_equal_one_at_a_time(hidden, dtype, tol, check):
    """Inputs ``(R, G, P, D_in)`` with weights ``(R, 1, D_in, D_out)``: R independent networks."""
    nets = [_hidden_setup(dtype, per_example=False, positions=2, seed=20 + r) for r in range(2)]

    def stack(parts, dim=0):
        return NatGaussian(
            torch.stack([p.tau for p in parts], dim), torch.stack([p.rho for p in parts], dim)
        )

    x = stack([n[0] for n in nets])
    w = stack([n[1] for n in nets]).reshape(2, 1, D_IN, D_OUT)
    b = stack([n[2] for n in nets]).reshape(2, 1, D_OUT)
    m_back = stack([n[3] for n in nets])
    fwd = linear.to_output(x.mean, x.var if hidden else None, w, b)
    terms = linear.term_messages(fwd, m_back)
    got = {
        "forward": fwd.message(),
        "weight": linear.to_weight(fwd, terms),
        "weight reduced": linear.to_weight(fwd, terms, reduce_examples=True),
        "bias reduced": linear.to_bias(fwd, m_back, reduce_examples=True),
        "input": linear.to_input(fwd, terms),
    }
    for r, (xr, wr, br, mr) in enumerate(nets):
        f = linear.to_output(xr.mean, xr.var if hidden else None, wr, br)
        t = linear.term_messages(f, mr)
        ref = {
            "forward": f.message(),
            "weight": linear.to_weight(f, t),
            "weight reduced": linear.to_weight(f, t, reduce_examples=True),
            "bias reduced": linear.to_bias(f, mr, reduce_examples=True),
            "input": linear.to_input(f, t),
        }
        for key, value in ref.items():
            mine = got[key][r].reshape(*value.shape)
            check(
                f"linear batched networks {key}",
                [mine.tau, mine.rho],
                [value.tau, value.rho],
                tol.exact,
                1.0,
            )


# -------------------------------------------------------------------------------- hidden layer
def _hidden_setup(dtype, *, per_example: bool, positions: int, seed: int = 3):
    gen = torch.Generator().manual_seed(seed)
    x = _gaussians(gen, (G, positions, D_IN), dtype, var_range=(0.1, 1.0))
    _, w, b, m_back = _setup(dtype, per_example=per_example, seed=seed + 1, positions=positions)
    return x, w, b, m_back


@pytest.mark.parametrize("per_example", [False, True], ids=["shared", "per-example"])
def test_hidden_forward_moments_match_monte_carlo(per_example, dtype):
    x, w, b, _ = _hidden_setup(dtype, per_example=per_example, positions=2)
    fwd = linear.to_output(x.mean, x.var, w, b)
    gen = torch.Generator().manual_seed(7)
    n = 200_000

    def draw(g: NatGaussian) -> torch.Tensor:
        mean, var = g.mean.double(), g.var.double()
        return mean + var.sqrt() * torch.randn((n, *mean.shape), generator=gen, dtype=torch.float64)

    xs, ws, bs = draw(x), draw(w), draw(b)  # (n, G, P, D_in), (n, [G,] D_in, D_out), ...
    if per_example:
        s = torch.einsum("ngpi,ngij->ngpj", xs, ws) + bs[:, :, None, :]
    else:
        s = torch.einsum("ngpi,nij->ngpj", xs, ws) + bs[:, None, None, :]
    mc_mean, mc_var = s.mean(0), s.var(0)
    mean_se = (mc_var / n).sqrt()
    var_se = (((s - mc_mean) ** 4).mean(0) / n).sqrt()
    assert torch.all((fwd.out_mean.double() - mc_mean).abs() <= 5 * mean_se)
    assert torch.all((fwd.out_var.double() - mc_var).abs() <= 5 * var_se)


def _vmp_loops(x_mean, x_var, w_mean, w_var, b_mean, b_var, tau_b, rho_b, per_example):
    """Spec B.3.2 written out with plain Python loops (float64)."""
    g_n, p_n, i_n = x_mean.shape
    j_n = tau_b.shape[-1]
    out = {
        k: np.zeros(s)
        for k, s in [
            ("mu_s", (g_n, p_n, j_n)),
            ("var_s", (g_n, p_n, j_n)),
            ("w_tau", (g_n, i_n, j_n)),
            ("w_rho", (g_n, i_n, j_n)),
            ("x_tau", (g_n, p_n, i_n)),
            ("x_rho", (g_n, p_n, i_n)),
            ("b_tau", (g_n, j_n)),
            ("b_rho", (g_n, j_n)),
        ]
    }
    for g in range(g_n):
        wm = _per_example(w_mean, g, per_example)
        wv = _per_example(w_var, g, per_example)
        bm, bv = _per_example(b_mean, g, per_example), _per_example(b_var, g, per_example)
        for p in range(p_n):
            ex = [x_mean[g, p, i] for i in range(i_n)]
            ex2 = [x_var[g, p, i] + x_mean[g, p, i] ** 2 for i in range(i_n)]
            for j in range(j_n):
                ew2 = [wv[i, j] + wm[i, j] ** 2 for i in range(i_n)]
                v = [ex2[i] * ew2[i] - ex[i] ** 2 * wm[i, j] ** 2 for i in range(i_n)]
                mu_s = sum(ex[i] * wm[i, j] for i in range(i_n)) + bm[j]
                var_s = sum(v) + bv[j]
                out["mu_s"][g, p, j], out["var_s"][g, p, j] = mu_s, var_s
                tb, rb = tau_b[g, p, j], rho_b[g, p, j]
                for i in range(i_n):
                    den = 1 + rb * (var_s - v[i])
                    rz, tz = rb / den, (tb - rb * (mu_s - ex[i] * wm[i, j])) / den
                    out["w_tau"][g, i, j] += ex[i] * tz
                    out["w_rho"][g, i, j] += ex2[i] * rz
                    out["x_tau"][g, p, i] += wm[i, j] * tz
                    out["x_rho"][g, p, i] += ew2[i] * rz
                den = 1 + rb * (var_s - bv[j])
                out["b_tau"][g, j] += (tb - rb * (mu_s - bm[j])) / den
                out["b_rho"][g, j] += rb / den
    return out


@pytest.mark.parametrize("positions", [1, 3])
@pytest.mark.parametrize("per_example", [False, True], ids=["shared", "per-example"])
def test_hidden_messages_match_the_vmp_loops(per_example, positions, dtype, tol, check):
    x, w, b, m_back = _hidden_setup(dtype, per_example=per_example, positions=positions)
    fwd = linear.to_output(x.mean, x.var, w, b)
    terms = linear.term_messages(fwd, m_back)
    to_w, to_x, to_b = (
        linear.to_weight(fwd, terms),
        linear.to_input(fwd, terms),
        linear.to_bias(fwd, m_back),
    )
    ref = _vmp_loops(
        _np(x.mean),
        _np(x.var),
        _np(w.mean),
        _np(w.var),
        _np(b.mean),
        _np(b.var),
        _np(m_back.tau),
        _np(m_back.rho),
        per_example,
    )
    rtol = tol.exact
    check(
        "linear hidden forward",
        [fwd.out_mean, fwd.out_var],
        [ref["mu_s"], ref["var_s"]],
        rtol,
        [np.sqrt(ref["var_s"]), 0],
    )
    check(
        "linear hidden to_weight vs loops",
        [to_w.tau, to_w.rho],
        [ref["w_tau"], ref["w_rho"]],
        rtol,
        [np.abs(ref["w_tau"]).max(), np.abs(ref["w_rho"]).max()],
    )
    check(
        "linear hidden to_input vs loops",
        [to_x.tau, to_x.rho],
        [ref["x_tau"], ref["x_rho"]],
        rtol,
        [np.abs(ref["x_tau"]).max(), np.abs(ref["x_rho"]).max()],
    )
    check(
        "linear hidden to_bias vs loops",
        [to_b.tau, to_b.rho],
        [ref["b_tau"], ref["b_rho"]],
        rtol,
        [np.abs(ref["b_tau"]).max(), np.abs(ref["b_rho"]).max()],
    )


@pytest.mark.parametrize("hidden", [False, True], ids=["first", "hidden"])
def test_uniform_backward_message_gives_uniform_messages(hidden, dtype):
    x, w, b, m_back = _hidden_setup(dtype, per_example=False, positions=2)
    fwd = linear.to_output(x.mean, x.var if hidden else None, w, b)
    uniform = NatGaussian.uniform(m_back.shape, dtype=dtype)
    terms = linear.term_messages(fwd, uniform)
    for msg in (
        linear.to_weight(fwd, terms),
        linear.to_bias(fwd, uniform),
        linear.to_input(fwd, terms),
    ):
        assert torch.equal(msg.tau, torch.zeros_like(msg.tau))
        assert torch.equal(msg.rho, torch.zeros_like(msg.rho))


def test_hidden_messages_are_proper(dtype):
    x, w, b, m_back = _hidden_setup(dtype, per_example=True, positions=3, seed=11)
    fwd = linear.to_output(x.mean, x.var, w, b)
    terms = linear.term_messages(fwd, m_back)
    for msg in (
        linear.to_weight(fwd, terms),
        linear.to_input(fwd, terms),
        linear.to_bias(fwd, m_back),
    ):
        assert bool(msg.is_proper().all())
        assert bool((msg.rho > 0).all())
    assert bool(torch.isfinite(fwd.out_var).all())
    assert float(fwd.out_var.min()) > 0
