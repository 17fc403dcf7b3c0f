"""Approximate message passing for Bayesian neural networks, in PyTorch.

A Bayesian neural network whose posterior over weights is approximated by Gaussian message
passing on a factor graph (Sommerfeld, Helms, Herbrich, arXiv:2501.15573).

Example:
    >>> import torch
    >>> from amp import Network, Trainer, specs
    >>> net = Network(specs.arch("toy_regression"), input_shape=(1,), seed=0)
    >>> x = torch.linspace(-0.5, 0.5, 20, dtype=torch.float64)[:, None]
    >>> trainer = Trainer(net, batch_size=20).fit(x, torch.sin(6 * x), epochs=1, iterations=5)
    >>> mean, var = net.predict(x)
"""

from amp import specs
from amp.gaussian import NatGaussian
from amp.network import Network
from amp.schedules import Schedule
from amp.trainer import DivergenceError, Trainer

__all__ = ["DivergenceError", "NatGaussian", "Network", "Schedule", "Trainer", "specs"]
