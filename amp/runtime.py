"""Devices, threads and wall-clock timers shared by every training script."""

from __future__ import annotations

import time

import torch

__all__ = ["DTYPES", "Stopwatch", "resolve_dtype", "resolve_device", "synchronize"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}
"""The floating-point types a run may ask for by name (configuration files, checkpoints)."""


def resolve_dtype(name: str | torch.dtype) -> torch.dtype:
    """Turn ``"float32"`` or ``"float64"`` (or a torch dtype of those) into the torch dtype.

    Raises:
        ValueError: If the name is not one of :data:`DTYPES`.
    """
    if isinstance(name, torch.dtype) and name in DTYPES.values():
        return name
    if name not in DTYPES:
        raise ValueError(f"invalid dtype: {name!r} (use one of {', '.join(DTYPES)})")
    return DTYPES[name]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` into a usable device.

    Args:
        device: ``"auto"`` picks CUDA when available, else the CPU.

    Returns:
        The device.

    Raises:
        ValueError: If CUDA is asked for but not available, or the name is unknown.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r} requested but CUDA is not available; use 'cpu' or 'auto'"
            )
        return torch.device(device)
    raise ValueError(f"invalid device: {device!r} (use 'auto', 'cpu', 'cuda' or 'cuda:N')")


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so that wall-clock timings are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """Wall-clock timer that synchronises the device before reading the clock.

    Example:
        >>> watch = Stopwatch(torch.device("cpu"))
        >>> with watch:
        ...     _ = torch.ones(3).sum()
        >>> watch.seconds >= 0.0
        True
    """

    def __init__(self, device: torch.device | None = None) -> None:
        self.device = device or torch.device("cpu")
        self.seconds = 0.0
        self._start: float | None = None

    def __enter__(self) -> Stopwatch:
        synchronize(self.device)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        synchronize(self.device)
        assert self._start is not None
        self.seconds += time.perf_counter() - self._start
        self._start = None
