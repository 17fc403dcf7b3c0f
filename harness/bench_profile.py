"""Where an MP pass spends its time: the share of each layer kind and direction.

:func:`profile_pass` times one training pass with every layer's ``forward`` and ``backward``
wrapped in a wall-clock timer (the device synchronised around each call), and reports each
``(kind, direction)``'s share of the pass; ``other`` is the rest (the trainer's cavities, the
batch message store, the end-of-sweep updates of the weight marginals). The wrappers live on
the layer instances of this one trainer only and are removed afterwards.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import Tensor

from amp.runtime import synchronize
from amp.trainer import Trainer

__all__ = ["DIRECTIONS", "layer_kind", "profile_pass"]

DIRECTIONS = ("forward", "backward")

_KINDS = {
    "LeakyReLULayer": "leaky_relu",
    "MaxPoolLayer": "maxpool",
    "FlattenLayer": "flatten",
    "ArgmaxLayer": "argmax",
    "RegressionLayer": "regression",
}


def layer_kind(layer: Any) -> str:
    """The kind of a layer: ``linear``, ``conv``, ``leaky_relu``, ``maxpool``, ``argmax``, ..."""
    if hasattr(layer, "is_conv"):
        return "conv" if layer.is_conv else "linear"
    return _KINDS.get(type(layer).__name__, type(layer).__name__)


@contextmanager
def _timed_layers(trainer: Trainer, totals: dict[str, float]) -> Iterator[None]:
    device = trainer.net.device

    def wrap(method: Callable, key: str) -> Callable:
        def timed(*args: Any, **kwargs: Any) -> Any:
            synchronize(device)
            start = time.perf_counter()
            out = method(*args, **kwargs)
            synchronize(device)
            totals[key] += time.perf_counter() - start
            return out

        return timed

    layers = trainer.net.layers
    for layer in layers:
        for direction in DIRECTIONS:
            key = f"{layer_kind(layer)} {direction}"
            setattr(layer, direction, wrap(getattr(layer, direction), key))
    try:
        yield
    finally:
        for layer in layers:
            for direction in DIRECTIONS:
                delattr(layer, direction)  # back to the class's method


def profile_pass(trainer: Trainer, x: Tensor, y: Tensor) -> dict[str, float]:
    """One training pass (one sweep per batch) with each layer kind and direction timed.

    Args:
        trainer: A trainer whose network suits ``x``; it trains one more epoch.
        x: Inputs ``(N, *input_shape)``.
        y: Labels ``(N,)`` or targets ``(N, D)``.

    Returns:
        Share of the pass's wall-clock time (0–1) per ``"<kind> <direction>"`` and ``"other"``;
        the shares sum to 1.
    """
    totals: dict[str, float] = defaultdict(float)
    with _timed_layers(trainer, totals):
        synchronize(trainer.net.device)
        start = time.perf_counter()
        trainer.fit(x, y, epochs=1, iterations=1)
        synchronize(trainer.net.device)
        seconds = time.perf_counter() - start
    shares = {key: value / seconds for key, value in sorted(totals.items())}
    shares["other"] = max(0.0, 1.0 - sum(shares.values()))
    return shares
