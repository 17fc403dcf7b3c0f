"""Atomic file output, and checkpoints that load without running code from the file.

Every result file of the harness (checkpoints, predictions, metrics, tables) is written to a
temporary file in the destination directory, flushed to disk, and renamed over the destination.
A rename within one file system is atomic, so readers see either the old or the new file.

Checkpoints hold plain data only: tensors, numbers, strings, ``None``, and lists, tuples and
dicts of them (layer specs as dicts, dtypes by name, generator states as tensors).
:func:`save_checkpoint` refuses anything else, and :func:`load_checkpoint` reads with
``torch.load(weights_only=True)``, whose unpickler builds these types and tensors and calls none
but PyTorch's own tensor-rebuilding functions. No class of ours is allow-listed: a ``model.pt``
received from someone else cannot run code in the harness, and a file that would need code to
load is refused with :class:`UnsafeCheckpointError`.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import pickle
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import torch

__all__ = [
    "CorruptFileError",
    "UnsafeCheckpointError",
    "atomic_open",
    "identity_differences",
    "load_checkpoint",
    "plain_data_problem",
    "save_checkpoint",
    "write_json",
    "write_text",
]


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _umask_mode()


class CorruptFileError(RuntimeError):
    """A file exists but cannot be read back (truncated, corrupt or of the wrong kind)."""


class UnsafeCheckpointError(CorruptFileError):
    """A checkpoint holds Python objects that only load by running code named in the file.

    Checkpoints written by earlier versions of this code (with layer-spec dataclasses in them) and
    crafted files both end here; the safe loader stops at the first such object, so nothing named
    in the file is ever called.
    """


_PLAIN_VALUES = (type(None), bool, int, float, complex, str, bytes)
"""Leaf types a checkpoint may hold besides tensors (the safe loader builds them)."""
_PLAIN_CONTAINERS = (list, tuple, torch.Size, dict, collections.OrderedDict)
"""Exact container types a checkpoint may hold (subclasses such as named tuples need code)."""
_PLAIN_TENSORS = (torch.Tensor, torch.nn.Parameter)
"""Tensor types the safe loader rebuilds (other tensor subclasses need their class)."""
_SAFE_LOADER_REFUSAL = "Weights only load failed"
"""How the safe loader's message starts when a file needs more than plain data."""
_REFUSED_GLOBAL = re.compile(r"GLOBAL (\S+) was not an allowed global")
"""How ``torch.load(weights_only=True)`` names the function or class a file asked for."""


def identity_differences(wanted: Mapping[str, Any], found: Mapping[str, Any]) -> list[str]:
    """The keys on which a saved run's identity and the requested run's differ.

    The one check behind every resume: a checkpoint is continued only when this list is empty;
    otherwise the caller names the keys in its error or warning. A key present on one side only
    counts as a difference.

    Args:
        wanted: What the run about to start is (settings, layers, data shapes, ...).
        found: What the saved state says it was.

    Returns:
        The differing keys, sorted.
    """
    return sorted(key for key in wanted.keys() | found.keys() if wanted.get(key) != found.get(key))


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file that replaces ``path`` only when the block exits without error.

    Args:
        path: Destination file. Its parent directory is created if missing.
        mode: ``"wb"`` or ``"w"``.

    Yields:
        The open temporary file.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"invalid mode: {mode!r} (use 'w' or 'wb')")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _FILE_MODE)  # mkstemp creates 0600; results are ordinary files
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_open(path, "w") as handle:
        handle.write(text)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON atomically, with sorted keys and a trailing newline (stable bytes)."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def plain_data_problem(value: Any, where: str = "state") -> str | None:
    """The first entry of ``value`` that a checkpoint may not hold, or ``None`` if all are plain.

    Plain data: tensors, ``None``, bools, numbers, strings, bytes, and lists, tuples and dicts
    of plain data (dict keys included); exactly what ``torch.load(weights_only=True)`` rebuilds
    without being told about any class.

    Args:
        value: A state to be saved.
        where: How the caller names ``value`` in the message.

    Returns:
        ``None``, or a phrase such as ``"state['specs'][0] is of type amp.specs.Linear"``.
    """
    kind = type(value)
    if kind in _PLAIN_VALUES or kind in _PLAIN_TENSORS:
        return None
    if kind not in _PLAIN_CONTAINERS:
        return f"{where} is of type {kind.__module__}.{kind.__qualname__}"
    if isinstance(value, dict):
        for key, item in value.items():
            problem = plain_data_problem(key, f"a key of {where}") or plain_data_problem(
                item, f"{where}[{key!r}]"
            )
            if problem:
                return problem
        return None
    for index, item in enumerate(value):
        problem = plain_data_problem(item, f"{where}[{index}]")
        if problem:
            return problem
    return None


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Save a state of plain data atomically (see :func:`plain_data_problem`).

    Args:
        path: Destination file.
        state: Tensors, numbers, strings, ``None`` and lists, tuples and dicts of them.

    Raises:
        TypeError: If ``state`` holds anything else (a dataclass, an enum, a ``torch.dtype``,
            a NumPy array, ...); the message names the entry. Nothing is written then.
    """
    problem = plain_data_problem(state)
    if problem:
        raise TypeError(
            f"cannot save checkpoint {path}: {problem}; checkpoints hold only tensors, numbers, "
            "strings, None and lists, tuples and dicts of them (convert it to those first)"
        )
    with atomic_open(path, "wb") as handle:
        torch.save(state, handle)


def load_checkpoint(
    path: str | os.PathLike,
    *,
    required_keys: tuple[str, ...] = (),
    map_location: str | torch.device | Callable | None = "cpu",
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, refusing anything corrupt.

    ``torch.save`` writes a zip archive with a CRC-32 of every record, but ``torch.load`` does
    not check them: a damaged byte inside a tensor would load silently. The checksums are
    therefore verified first (``zipfile.ZipFile.testzip``, about 1 s per 5 GB). The state is then
    read with ``torch.load(weights_only=True)``: plain data only, no code from the file runs.

    Args:
        path: Checkpoint file.
        required_keys: Keys the checkpoint must contain.
        map_location: Passed to ``torch.load``.

    Returns:
        The saved state.

    Raises:
        FileNotFoundError: If the file does not exist.
        UnsafeCheckpointError: If the file holds objects that only load by running code (written
            by an earlier version of this code, or crafted); nothing from it is executed.
        CorruptFileError: If the file is truncated, corrupt, or lacks a required key.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
        if damaged is not None:
            raise zipfile.BadZipFile(f"checksum mismatch in record {damaged!r}")
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # zipfile and torch raise several types for damaged archives
        if isinstance(err, pickle.UnpicklingError) and _SAFE_LOADER_REFUSAL in str(err):
            refused = _REFUSED_GLOBAL.search(str(err))
            needs = f"the Python object {refused.group(1)}" if refused else "Python objects"
            raise UnsafeCheckpointError(
                f"checkpoint {path} was not written by this version of the harness: loading it "
                f"would need {needs}, i.e. run code named in the file, which is refused; delete "
                "it and rerun to write it afresh"
            ) from None  # torch's own message suggests switching the safe loader off
        raise CorruptFileError(
            f"checkpoint {path} is corrupt or truncated ({type(err).__name__}: {err}); "
            "delete it to start this run again from scratch"
        ) from err
    if not isinstance(state, dict):
        raise CorruptFileError(f"checkpoint {path} does not hold a state dictionary")
    missing = [key for key in required_keys if key not in state]
    if missing:
        raise CorruptFileError(f"checkpoint {path} lacks {missing}; not written by this code")
    return state
