"""Shared fixtures of the factor tests: dtypes with their tolerances and error bookkeeping.

Every comparison goes through :func:`check`, which measures a *normalised* error

    err = max |got − ref| / (scale + |ref|)

(``scale`` is the natural size of the quantity, e.g. the tilted distribution's natural parameters
for an EP message, see each test), asserts ``err <= rtol`` and records it as the test property
``relerr|<name>|<dtype>``; ``pytest --junitxml`` then carries the worst errors per reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import special


@dataclass(frozen=True)
class Tolerance:
    """Per-dtype tolerances of the three kinds of reference.

    Attributes:
        exact: Closed-form references that differ from the code only by rounding. float64:
            measured worst ~2e-15; float32: the factors compute in float32, and a difference
            such as ``σ²_s − V_k`` of a sum of very unequal variances costs a few 1e-6.
        quad: References computed by numerical integration. float64: the code's moment
            formulas cancel (``m2/m0 − mean²``) by up to ~(|μ|/σ)² ulp, measured worst ~3e-10
            over six random samples; float32: inputs rounded, float64 inside, output cast.
        spec: The test vectors of algorithm_spec.md's appendix, printed to 8 digits.
    """

    exact: float
    quad: float
    spec: float


TOLERANCES = {
    torch.float64: Tolerance(exact=1e-12, quad=1e-9, spec=1e-6),
    torch.float32: Tolerance(exact=1e-5, quad=1e-6, spec=1e-5),
}
"""float32 rows: inputs are rounded to float32 first and every reference is evaluated on the
rounded inputs (in float64), so the tolerance covers only the arithmetic in float32."""


@pytest.fixture(params=[torch.float64, torch.float32], ids=["f64", "f32"])
def dtype(request: pytest.FixtureRequest) -> torch.dtype:
    return request.param


@pytest.fixture
def tol(dtype: torch.dtype) -> Tolerance:
    return TOLERANCES[dtype]


def _as_array(x: object) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to(torch.float64).cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def normalised_error(got: object, ref: object, scale: object = 0.0) -> float:
    """``max |got − ref| / (scale + |ref|)`` (0/0 counts as 0).

    ``scale`` may be a list with one entry per row of ``ref`` (each broadcast to the row), an
    array whose shape is a prefix of ``ref``'s (broadcast from the left), or anything numpy
    broadcasts from the right.
    """
    g, r = _as_array(got), _as_array(ref)
    if isinstance(scale, list | tuple) and len(scale) == len(r):  # one scale per row of ref
        s = np.stack([np.broadcast_to(_as_array(item), r.shape[1:]) for item in scale])
    else:
        s = _as_array(scale)
    if s.ndim and r.shape[: s.ndim] == s.shape:
        s = s.reshape(s.shape + (1,) * (r.ndim - s.ndim))
    s = np.broadcast_to(s, r.shape)
    denom = s + np.abs(r)
    diff = np.abs(g - r)
    if not np.all(np.isfinite(g)):
        return math.inf
    ratio = np.where(diff == 0, 0.0, diff / np.where(denom == 0, 1.0, denom))
    return float(ratio.max()) if ratio.size else 0.0


@pytest.fixture
def check(record_property: Callable[[str, object], None], request: pytest.FixtureRequest):
    """``check(name, got, ref, rtol, scale=0)``: assert and record a normalised error."""
    params = request.node.callspec.params if hasattr(request.node, "callspec") else {}
    label = "f32" if params.get("dtype") == torch.float32 else "f64"

    def _check(name: str, got: object, ref: object, rtol: float, scale: object = 0.0) -> float:
        err = normalised_error(got, ref, scale)
        record_property(f"relerr|{name}|{label}", err)
        assert err <= rtol, f"{name}: normalised error {err:.3e} > {rtol:.1e}"
        return err

    return _check


# ----------------------------------------------------------------------- independent formulas
def pairwise_probit_probs(mean: np.ndarray, var: np.ndarray, noise_var: float) -> np.ndarray:
    """``p_j ∝ Π_{i≠j} Φ((μ_j − μ_i)/√(σ_i² + σ_j² + noise))``, normalised, by explicit loops.

    Products are accumulated as sums of ``log Φ`` (``scipy.special.log_ndtr``) so that no term
    underflows; the result is the same normalised product.
    """
    mean = np.asarray(mean, dtype=np.float64)
    var = np.asarray(var, dtype=np.float64)
    flat_m = mean.reshape(-1, mean.shape[-1])
    flat_v = var.reshape(-1, var.shape[-1])
    out = np.empty_like(flat_m)
    for row in range(flat_m.shape[0]):
        k = flat_m.shape[1]
        logs = np.zeros(k)
        for j in range(k):
            for i in range(k):
                if i != j:
                    z = (flat_m[row, j] - flat_m[row, i]) / math.sqrt(
                        flat_v[row, i] + flat_v[row, j] + noise_var
                    )
                    logs[j] += special.log_ndtr(z)
        w = np.exp(logs - logs.max())
        out[row] = w / w.sum()
    return out.reshape(mean.shape)


def gaussian_message(post_mean: float, post_var: float, prior_mean: float, prior_var: float):
    """Natural parameters of posterior / prior (the EP message), ``(tau, rho)``."""
    return (
        post_mean / post_var - prior_mean / prior_var,
        1.0 / post_var - 1.0 / prior_var,
    )


@pytest.fixture(scope="session")
def refs() -> SimpleNamespace:
    """Independent reference formulas shared by several factor tests."""
    return SimpleNamespace(
        pairwise_probit_probs=pairwise_probit_probs, gaussian_message=gaussian_message
    )
