"""Trained models back from the ``model.pt`` a training job leaves, ready to predict new inputs.

The pipeline predicts further input sets (shifted test images, more OOD sets) in jobs of their
own, after training, so that changing those sets never retrains a model. A training job's
``model.pt`` is its final checkpoint: for MP the trainer state of :meth:`amp.Trainer.save`, for
AdamW and IVON the checkpoint of :func:`baselines.train.train`. Only what prediction needs is
rebuilt: MP's network (its batch message store is not touched), the baseline's network, and
for the IVON model average the optimizer, which holds the posterior.

- :func:`restore_baseline`: network (and IVON optimizer) from a baseline checkpoint's state.
- :func:`load_predictor`: a function ``inputs -> predictive probabilities`` for one method's
  artefact (``mp``, ``adamw``, ``ivon`` = model average, ``ivon_mean`` = IVON@mean).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import ivon
import torch
from torch import nn

from amp import specs
from amp.io import CorruptFileError, load_checkpoint
from amp.network import Network
from amp.runtime import resolve_device, resolve_dtype
from baselines.models import build_model
from baselines.predict import predict_probs, predict_probs_ivon_bma

__all__ = ["ARTIFACTS", "load_predictor", "restore_baseline"]

ARTIFACTS = ("mp", "adamw", "ivon", "ivon_mean")
"""Prediction artefacts :func:`load_predictor` serves; IVON's two share one checkpoint."""

_MP_KEYS = ("specs", "input_shape", "dtype", "network")
_BASELINE_KEYS = ("model", "optimizer")


def restore_baseline(
    layers: Sequence[specs.LayerSpec],
    input_shape: Sequence[int],
    state: dict[str, Any],
    *,
    dtype: torch.dtype,
    device: torch.device,
) -> tuple[nn.Module, ivon.IVON | None]:
    """The network of a baseline checkpoint and, for IVON, its optimizer (the posterior).

    Args:
        layers: The architecture's layer specs.
        input_shape: Shape of one input.
        state: A checkpoint of :func:`baselines.train.train` (``model`` and ``optimizer``).
        dtype: Dtype the network was trained in.
        device: Device to restore onto.

    Returns:
        ``(model, optimizer)``; ``optimizer`` is ``None`` unless the run trained with IVON.
        IVON's hyperparameters, Hessian and momentum come from the saved state.
    """
    model = build_model(layers, tuple(input_shape), dtype=dtype, device=device)
    model.load_state_dict(state["model"])
    groups = state["optimizer"].get("param_groups", [])
    if not groups or "hess" not in groups[0]:
        return model, None
    optimizer = ivon.IVON(model.parameters(), lr=1.0, ess=1.0)  # placeholders: loaded next
    optimizer.load_state_dict(state["optimizer"])
    for group in optimizer.param_groups:  # kept in the groups, so not moved by load_state_dict
        for key in ("momentum", "hess"):
            group[key] = group[key].to(device=device, dtype=dtype)
    return model, optimizer


def load_predictor(
    artifact: str,
    model_path: str | os.PathLike,
    arch: str,
    input_shape: Sequence[int],
    *,
    dtype: str = "float32",
    device: str = "cpu",
    test_samples: int = 100,
    seed: int = 0,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function that predicts class probabilities with a trained model from its checkpoint.

    Args:
        artifact: ``"mp"``, ``"adamw"``, ``"ivon"`` (model average over ``test_samples`` weight
            samples, seeded by ``seed`` as in :func:`harness.runs.baseline.run_baseline`) or
            ``"ivon_mean"`` (IVON at its mean weights).
        model_path: The training job's ``model.pt``.
        arch: Named architecture (:func:`amp.specs.arch`).
        input_shape: Shape of one input.
        dtype: Dtype of the run (``methods.<method>.dtype``).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        test_samples: IVON weight samples of the model average.
        seed: The run's seed.

    Returns:
        ``predict(x)`` mapping inputs ``(M, *input_shape)`` (any float dtype, on the CPU) to
        probabilities ``(M, K)`` on the CPU.

    Raises:
        ValueError: On an unknown artefact, or a checkpoint of another architecture.
        amp.io.CorruptFileError: If the checkpoint is damaged or of another method.
    """
    if artifact not in ARTIFACTS:
        raise ValueError(f"invalid artifact: {artifact!r} (use one of {', '.join(ARTIFACTS)})")
    target = resolve_device(device)
    torch_dtype = resolve_dtype(dtype)
    layers = specs.arch(arch)
    if artifact == "mp":
        state = load_checkpoint(model_path, required_keys=_MP_KEYS)
        saved_layers = tuple(specs.from_dict(entry) for entry in state["specs"])
        if saved_layers != tuple(layers):
            raise ValueError(f"{model_path} holds another architecture than {arch!r}")
        saved_dtype = resolve_dtype(str(state["dtype"]).removeprefix("torch."))
        shape = tuple(state["input_shape"])
        net = Network(saved_layers, shape, dtype=saved_dtype, device=target)
        net.load_state_dict(state["network"])
        return lambda x: net.predict(x.to(dtype=saved_dtype, device=target)).cpu()
    state = load_checkpoint(model_path, required_keys=_BASELINE_KEYS)
    model, optimizer = restore_baseline(
        layers, input_shape, state, dtype=torch_dtype, device=target
    )
    if artifact == "ivon" and optimizer is None:
        raise CorruptFileError(f"{model_path} was not trained with IVON; no model average")

    def predict(x: torch.Tensor) -> torch.Tensor:
        x = x.to(dtype=torch_dtype, device=target)
        if artifact == "ivon":
            return predict_probs_ivon_bma(model, optimizer, x, test_samples, seed=seed).cpu()
        return predict_probs(model, x).cpu()

    return predict
