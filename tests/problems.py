"""Small synthetic problems shared by the trainer and schedule tests."""

import math

import torch

F64 = torch.float64


def linear_regression_data(n=40, d=3, noise_var=0.09, seed=0):
    """Linear-Gaussian data with shifted inputs: ``(x (n, d), y (n, 1))``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=F64) + torch.linspace(-1.0, 2.0, d, dtype=F64)
    w = torch.linspace(1.0, -2.0, d, dtype=F64)
    y = x @ w + 0.7 + math.sqrt(noise_var) * torch.randn(n, generator=g, dtype=F64)
    return x, y[:, None]


def shifted_correlated_regression(n=600, d=10, seed=0):
    """Inputs with a strong common component and shifted means (Jacobi's worst case)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=F64) + 2.0 * torch.randn(n, 1, generator=g, dtype=F64)
    x = x + torch.linspace(1, 5, d, dtype=F64)
    w = torch.randn(d, generator=g, dtype=F64)
    y = (x @ w + 1.0 + 0.5 * torch.randn(n, generator=g, dtype=F64))[:, None]
    x = (x - x[:500].mean()) / x[:500].std()  # one global scalar, as the reference does
    return x[:500], y[:500], x[500:], y[500:]
