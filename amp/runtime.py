"""Devices, threads, compiled kernels and wall-clock timers shared by every training script."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

__all__ = [
    "DTYPES",
    "Stopwatch",
    "call_compiled",
    "compile_options",
    "compiled_kernels_available",
    "denormals_flushed",
    "flush_denormal",
    "resolve_dtype",
    "resolve_device",
    "synchronize",
]

_SMALLEST_NORMAL_FLOAT32 = torch.finfo(torch.float32).tiny
"""2**-126: below it, float32 numbers are subnormal (IEEE 754-2008, binary32)."""

DTYPES = {"float32": torch.float32, "float64": torch.float64}
"""The floating-point types a run may ask for by name (configuration files, checkpoints)."""


_log = logging.getLogger(__name__)
_kernels: dict[Callable, Callable] = {}
_options: dict[Callable, dict[str, Any]] = {}
_compile_failed = False


def compiled_kernels_available() -> bool:
    """Whether :func:`call_compiled` compiles (``False`` after a failed compilation)."""
    return not _compile_failed


def compile_options(**options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: Inductor options of the kernel that :func:`call_compiled` builds of a function.

    The function itself is returned unchanged (it stays the eager reference).
    """

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        _options[fn] = options
        return fn

    return register


def call_compiled(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any | None:
    """``fn(*args, **kwargs)`` by its ``torch.compile`` kernel, compiled on first use for any sizes.

    Used by the message functions that run as fused kernels (``compiled`` layers): the function
    stays the eager reference, its compiled kernel the fast path.

    Returns:
        The result, or ``None`` when compilation fails here (no C++ compiler, an unsupported
        device): a warning is logged once and every later call returns ``None`` at once, so
        that the caller evaluates ``fn`` eagerly.
    """
    global _compile_failed
    if _compile_failed:
        return None
    kernel = _kernels.get(fn)
    if kernel is None:
        kernel = _kernels[fn] = torch.compile(fn, dynamic=True, options=_options.get(fn))
    try:
        return kernel(*args, **kwargs)
    except Exception as err:  # noqa: BLE001 (any compiler failure: fall back, once)
        _compile_failed = True
        _log.warning(
            "compiled message kernels unavailable (%s: %s); using the eager evaluation",
            type(err).__name__,
            err,
        )
        return None


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


def denormals_flushed() -> bool:
    """Whether the CPU currently flushes subnormal float32 numbers to zero (this thread).

    PyTorch can set the mode (:func:`torch.set_flush_denormal`) but not read it; this probes it
    by halving the smallest normal float32 number, whose exact result is subnormal.
    """
    probe = torch.tensor([_SMALLEST_NORMAL_FLOAT32], dtype=torch.float32) * 0.5
    return bool(probe.item() == 0.0)


@contextmanager
def flush_denormal(enabled: bool = True, device: torch.device | str = "cpu") -> Iterator[bool]:
    """Flush subnormal numbers to zero on the CPU inside the block; restore the mode after.

    Message passing drives many precisions and messages towards zero; on x86 CPUs every
    arithmetic operation on a subnormal number takes a slow path (about twice the time of an MP
    epoch of ``mlp`` on real data in float32). Flushing them changes results only below
    ``torch.finfo(dtype).tiny``. The same mode can slow other code (plain PyTorch training
    loops have run many times slower with it on some machines), so it is switched on only
    inside the block and the previous mode is restored on exit, also after an exception.

    The mode belongs to the calling thread's floating-point control register (x86 SSE
    FTZ/DAZ), as :func:`torch.set_flush_denormal` sets it.

    Args:
        enabled: Flush inside the block (``False``: keep subnormals, i.e. the IEEE default).
        device: Only CPU work is affected; on other devices the block changes nothing.

    Yields:
        Whether subnormals are flushed inside the block (``False`` where the CPU cannot).
    """
    if torch.device(device).type != "cpu":
        yield denormals_flushed()
        return
    previous = denormals_flushed()
    if enabled != previous:
        torch.set_flush_denormal(enabled)
    try:
        yield denormals_flushed()
    finally:
        if denormals_flushed() != previous:
            torch.set_flush_denormal(previous)


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
