"""Shared fixtures: tiny data files in the real on-disk formats, so no test downloads anything."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

FAKE_CIFAR_CLASSES = [
    "plane",
    "car",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def write_idx(path: Path, array: np.ndarray, *, gz: bool = True) -> Path:
    """Write an unsigned-byte IDX file (magic 0x0803 for images, 0x0801 for labels)."""
    magic = {3: 0x0803, 1: 0x0801}[array.ndim]
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path = Path(f"{path}.gz") if gz else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def write_fake_mnist(
    directory: Path, *, n_train: int = 20, n_test: int = 10, seed: int = 0, gz: bool = True
) -> dict[str, np.ndarray]:
    """The four MNIST/Fashion-MNIST IDX files with random pixels and balanced labels."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.permutation(np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.permutation(np.arange(n_test) % 10).astype(np.uint8),
    }
    for stem, array in arrays.items():
        write_idx(Path(directory) / stem, array, gz=gz)
    return arrays


def _py2_str(data: bytes) -> bytes:
    if len(data) < 256:
        return b"U" + bytes([len(data)]) + data  # SHORT_BINSTRING
    return b"T" + struct.pack("<I", len(data)) + data  # BINSTRING


def _py2_value(value: object) -> bytes:
    if isinstance(value, np.ndarray):  # ndarray as numpy 1.x under Python 2 reduced it
        header = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85"
        dtype = b"cnumpy\ndtype\n" + _py2_str(b"u1") + b"K\x00K\x01\x87R"
        dtype += b"(K\x03" + _py2_str(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
        shape = b"(" + b"".join(_py2_value(int(d)) for d in value.shape) + b"t"
        data = _py2_str(np.ascontiguousarray(value, dtype=np.uint8).tobytes())
        return header + _py2_str(b"b") + b"\x87R(K\x01" + shape + dtype + b"\x89" + data + b"tb"
    if isinstance(value, int):
        return b"J" + struct.pack("<i", value)  # BININT
    if isinstance(value, str):
        return _py2_str(value.encode("latin1"))
    return b"](" + b"".join(_py2_value(item) for item in value) + b"e"  # list


def python2_pickle(entry: dict) -> bytes:
    """A dict pickled as Python 2's cPickle (protocol 2) wrote the CIFAR-10 batches.

    Keys and names are byte strings, arrays reference ``numpy.core.multiarray`` (supports uint8
    arrays, ints, strings and lists of those).
    """
    items = b"".join(_py2_str(key.encode()) + _py2_value(value) for key, value in entry.items())
    return b"\x80\x02}(" + items + b"u."


def write_fake_cifar10(
    root: Path, *, per_batch: int = 4, n_test: int = 6, seed: int = 0, python2: bool = True
) -> dict[str, np.ndarray]:
    """``root/cifar-10-batches-py`` with five training batches, a test batch and the meta file.

    Each batch is a pickled dict with ``data`` uint8 ``(n, 3072)`` (R, G, B planes, each 32×32
    row-major), ``labels``, ``batch_label`` and ``filenames``; written as Python 2 wrote the
    original files, or (``python2=False``) with Python 3's pickle, protocol 2.
    """
    rng = np.random.default_rng(seed)
    directory = Path(root) / "cifar-10-batches-py"
    directory.mkdir(parents=True, exist_ok=True)
    dump = python2_pickle if python2 else lambda entry: pickle.dumps(entry, protocol=2)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    data, labels = {}, {}
    for name in names:
        n = n_test if name == "test_batch" else per_batch
        data[name] = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels[name] = rng.integers(0, 10, n).tolist()
        entry = {
            "batch_label": name,
            "labels": labels[name],
            "data": data[name],
            "filenames": [f"img_{i}.png" for i in range(n)],
        }
        (directory / name).write_bytes(dump(entry))
    meta = {"label_names": FAKE_CIFAR_CLASSES, "num_cases_per_batch": per_batch, "num_vis": 3072}
    (directory / "batches.meta").write_bytes(dump(meta))
    return {
        "x_train": np.concatenate([data[n] for n in names[:5]]),
        "y_train": np.concatenate([labels[n] for n in names[:5]]),
        "x_test": data["test_batch"],
        "y_test": np.asarray(labels["test_batch"]),
    }


def write_fake_svhn(
    root: Path, *, n_train: int = 8, n_test: int = 12, seed: int = 0
) -> dict[str, np.ndarray]:
    """SVHN's ``{train,test}_32x32.mat``: ``X`` uint8 (32, 32, 3, N), ``y`` (N, 1) in 1..10."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1)  # includes 10 (digit 0)
        Path(root).mkdir(parents=True, exist_ok=True)
        savemat(Path(root) / f"{split}_32x32.mat", {"X": x, "y": y})
        out[f"X_{split}"], out[f"y_{split}"] = x, y
    return out


@pytest.fixture
def fake_data() -> SimpleNamespace:
    """Writers of tiny data files in the real formats: ``idx``, ``mnist``, ``cifar10``, ``svhn``."""
    return SimpleNamespace(
        idx=write_idx, mnist=write_fake_mnist, cifar10=write_fake_cifar10, svhn=write_fake_svhn
    )


@pytest.fixture
def no_system_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide system-wide data sets (the Debian Fashion-MNIST package) from :mod:`harness.data`."""
    from harness.data import sources

    monkeypatch.setattr(sources, "FASHION_MNIST_SYSTEM_DIRS", ())
    monkeypatch.delenv(sources.DATA_ROOT_ENV, raising=False)
