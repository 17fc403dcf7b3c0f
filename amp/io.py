"""Atomic file output: a killed process never leaves a truncated file that looks valid.

Every result file of the harness (checkpoints, predictions, metrics, tables) is written to a
temporary file in the destination directory, flushed to disk, and renamed over the destination.
A rename within one file system is atomic, so readers see either the old or the new file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import torch

__all__ = [
    "CorruptFileError",
    "atomic_open",
    "identity_differences",
    "load_checkpoint",
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


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Save a ``torch.save``-able state atomically.

    Args:
        path: Destination file.
        state: Anything ``torch.save`` accepts (tensors, numbers, strings, nested dicts).
    """
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
    therefore verified first (``zipfile.ZipFile.testzip``, about 1 s per 5 GB).

    Args:
        path: Checkpoint file.
        required_keys: Keys the checkpoint must contain.
        map_location: Passed to ``torch.load``.

    Returns:
        The saved state.

    Raises:
        FileNotFoundError: If the file does not exist.
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
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # zipfile and torch raise several types for damaged archives
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
