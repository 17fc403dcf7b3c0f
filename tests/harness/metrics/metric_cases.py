"""Random classification problems shared by the metric tests."""

from __future__ import annotations

import numpy as np

DTYPES = [np.float64, np.float32]
TOL = {np.float64: 1e-12, np.float32: 1e-6}


def random_classification(seed: int, n: int, k: int, dtype=np.float64, alpha: float = 0.7):
    """Dirichlet probabilities and labels drawn from a tempered version of them."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(k, alpha), size=n)
    tempered = probs**1.5 / np.sum(probs**1.5, axis=1, keepdims=True)
    labels = np.array([rng.choice(k, p=row) for row in tempered])
    return probs.astype(dtype), labels
