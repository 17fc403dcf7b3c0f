"""Baselines trained on the same architectures as the message-passing network: AdamW and IVON.

* :mod:`baselines.models`: PyTorch modules built from :mod:`amp.specs` layer specs.
* :mod:`baselines.train`: the AdamW and IVON trainers with resumable checkpoints.
* :mod:`baselines.predict`: predictive distributions, including IVON's Bayesian model average.
* :mod:`baselines.replicas`: many independent networks trained and evaluated together.

Example:
    >>> import torch
    >>> from amp import specs
    >>> from baselines import TrainConfig, predict_probs, train
    >>> layers = (specs.Linear(8), specs.LeakyReLU(), specs.Linear(2), specs.Argmax())
    >>> x, y = torch.randn(32, 2), torch.randint(0, 2, (32,))
    >>> result = train(layers, x, y, TrainConfig(method="ivon", epochs=1, progress=False))
    >>> predict_probs(result.model, x).shape
    torch.Size([32, 2])
"""

from __future__ import annotations

from baselines.models import Likelihood, build_model, likelihood_of
from baselines.predict import (
    predict_probs,
    predict_probs_ivon_bma,
    predict_regression,
    predict_regression_ivon_bma,
)
from baselines.replicas import ReplicatedSequential, stack_models, unstack_model
from baselines.train import DivergenceError, EpochRecord, TrainConfig, TrainResult, train

__all__ = [
    "DivergenceError",
    "EpochRecord",
    "Likelihood",
    "ReplicatedSequential",
    "TrainConfig",
    "TrainResult",
    "build_model",
    "likelihood_of",
    "predict_probs",
    "predict_probs_ivon_bma",
    "predict_regression",
    "predict_regression_ivon_bma",
    "stack_models",
    "train",
    "unstack_model",
]
