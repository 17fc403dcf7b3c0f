"""Readers of the original on-disk formats of the image data sets.

IDX for MNIST and Fashion-MNIST, the Python pickles of ``cifar-10-batches-py`` for CIFAR-10 and
MATLAB ``.mat`` files for SVHN.

No pickle is executed beyond building NumPy arrays.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.data.dataset import DataError

__all__ = ["cifar_batches", "read_idx", "read_pickle", "svhn_split"]

_IDX_MAGIC = {"images": 0x00000803, "labels": 0x00000801}  # unsigned bytes, 3 or 1 dimensions


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if path.suffix == ".gz" else raw
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(
            f"cannot read {path}: truncated or corrupt ({err}); delete it and obtain the file again"
        ) from err


def read_idx(path: str | os.PathLike, kind: str) -> np.ndarray:
    """Read an unsigned-byte IDX file (MNIST format), gzip-compressed when it ends in ``.gz``.

    Args:
        path: The file.
        kind: ``"images"`` (magic 2051, shape ``(N, H, W)``) or ``"labels"`` (2049, ``(N,)``).

    Returns:
        A read-only uint8 array of the stored shape.

    Raises:
        DataError: If the file is truncated, corrupt, or not of the expected kind.
    """
    path = Path(path)
    raw = _read_bytes(path)
    ndim = 3 if kind == "images" else 1
    header = 4 + 4 * ndim
    if len(raw) < header or struct.unpack(">I", raw[:4])[0] != _IDX_MAGIC[kind]:
        raise DataError(
            f"{path} is not an IDX {kind} file (bad magic number or header); "
            "the file is corrupt or misnamed"
        )
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if len(raw) != header + int(np.prod(dims)):
        raise DataError(
            f"{path} is truncated or corrupt: its header promises shape {dims} "
            f"({header + int(np.prod(dims))} bytes), it holds {len(raw)} bytes"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that builds NumPy arrays and plain containers, nothing else."""

    _ALLOWED = {
        *(("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")),
        *(("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")),
        *(("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def read_pickle(path: Path) -> dict[str, Any]:
    """One CIFAR-10 pickle as a dictionary with ``str`` keys (NumPy arrays only are built)."""
    try:
        with path.open("rb") as handle:
            entry = _ArrayUnpickler(handle, encoding="latin1").load()
    except Exception as err:  # pickle raises many types on damaged input
        raise DataError(
            f"cannot read {path}: truncated or corrupt ({type(err).__name__}: {err}); "
            "delete it and obtain the file again"
        ) from err
    if not isinstance(entry, dict):
        raise DataError(f"{path} does not hold a CIFAR-10 dictionary")
    return {key.decode() if isinstance(key, bytes) else key: value for key, value in entry.items()}


def cifar_batches(directory: Path, names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 ``(N, 3, 32, 32)`` and labels int64 ``(N,)`` of the named CIFAR-10 batches."""
    images, labels = [], []
    for name in names:
        entry = read_pickle(directory / name)
        data, targets = np.asarray(entry.get("data")), np.asarray(entry.get("labels"))
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DataError(
                f"{directory / name}: 'data' must be uint8 (N, 3072), got {data.dtype} {data.shape}"
            )
        if targets.shape != (len(data),) or targets.dtype.kind not in "iu":
            raise DataError(f"{directory / name}: 'labels' must hold {len(data)} integers")
        images.append(data.reshape(-1, 3, 32, 32))  # rows store R, G, B planes, each row-major
        labels.append(targets.astype(np.int64))
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def svhn_split(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 ``(N, 3, 32, 32)`` and labels int64 ``(N,)`` (digit 0 as 0) of an SVHN file."""
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
        x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    except Exception as err:  # scipy raises many types on damaged input
        raise DataError(
            f"cannot read {path}: truncated or corrupt ({type(err).__name__}: {err}); "
            "delete it and obtain the file again"
        ) from err
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3) or len(y) != x.shape[3]:
        raise DataError(
            f"{path}: expected X uint8 (32, 32, 3, N) and N labels, got {x.dtype} "
            f"{x.shape} and {len(y)} labels"
        )
    if len(y) and (y.min() < 1 or y.max() > 10):
        raise DataError(f"{path}: SVHN labels must lie in 1..10 (10 is the digit 0)")
    labels = np.where(y == 10, 0, y).astype(np.int64)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1))), torch.from_numpy(labels)
