"""Where the data sets' files are found (or downloaded) and how each is read into tensors.

Files are looked up in a data root (also in torchvision's layout below it, e.g.
``root/FashionMNIST/raw`` or ``root/cifar-10-batches-py``); Fashion-MNIST also in
:data:`FASHION_MNIST_SYSTEM_DIRS`. torchvision's dataset classes are used only to download files
when asked to.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness.data.dataset import TRAIN_FRACTION, DataError, DatasetNotFoundError
from harness.data.formats import cifar_batches, read_idx, read_pickle, svhn_split
from harness.data.sine import make_sine

__all__ = [
    "DATA_ROOT_ENV",
    "FASHION_MNIST_SYSTEM_DIRS",
    "Raw",
    "default_root",
    "load_digits",
    "load_raw",
    "load_svhn",
]

DATA_ROOT_ENV = "AMP_DATA_ROOT"
"""Environment variable naming the data directory when ``root`` is not given (else ``data``)."""

FASHION_MNIST_SYSTEM_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)
"""Where the Debian package ``dataset-fashion-mnist`` installs the four original ``.gz`` files."""

DIGITS_SIDE = 28
"""scikit-learn's 8×8 digits are resized to 28×28 so that they fit Fashion-MNIST networks."""

DIGITS_MAX_VALUE = 16.0
"""Pixels of scikit-learn's digits count dark cells in 4×4 blocks: integers 0–16."""

_TEN_DIGITS = tuple(str(digit) for digit in range(10))
_FASHION_CLASSES = (
    *("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat"),
    *("Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
)
_IDX_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


@dataclass(frozen=True)
class Raw:
    """A data set as stored: ``x`` uint8 (scaled by 1/255) or float in [0, 1]."""

    task: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...] | None
    source: str


def default_root(root: str | os.PathLike | None) -> Path:
    """``root``, else ``$AMP_DATA_ROOT``, else ``data``."""
    return Path(root if root is not None else os.environ.get(DATA_ROOT_ENV, "data"))


def _candidates(name: str, root: Path) -> list[Path]:
    if name == "fashion_mnist":
        return [root / "FashionMNIST" / "raw", root, *FASHION_MNIST_SYSTEM_DIRS]
    if name == "mnist":
        return [root / "MNIST" / "raw", root]
    if name == "cifar10":
        return [root / _CIFAR_DIR, root]
    return [root, root / "svhn"]


def _find(name: str, root: Path, files: list[str], download: bool) -> Path:
    """Directory holding all ``files`` (an IDX file may also be gzip-compressed)."""

    def holds(directory: Path) -> bool:
        return all((directory / f).is_file() or (directory / f"{f}.gz").is_file() for f in files)

    for directory in _candidates(name, root):
        if holds(directory):
            return directory
    if download:
        try:
            _download(name, root, files)
        except Exception as err:  # network and checksum failures come in many types
            raise DatasetNotFoundError(f"downloading {name!r} into {root} failed: {err}") from err
        return _find(name, root, files, download=False)
    how = {
        "fashion_mnist": "`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or ",
        "svhn": "copy train_32x32.mat/test_32x32.mat from http://ufldl.stanford.edu/housenumbers/ "
        "into the data directory, or ",
    }.get(name, "")
    places = ", ".join(str(d) for d in _candidates(name, root))
    raise DatasetNotFoundError(
        f"dataset {name!r} not found: looked for {', '.join(files)} in {places}. To get it: "
        f"{how}pass download=True (the data configuration's download switch) on a machine with "
        f"internet access, or point root (or ${DATA_ROOT_ENV}) at a directory holding the files."
    )


def _download(name: str, root: Path, files: list[str]) -> None:
    """Download ``name`` into ``root`` with torchvision, which verifies the checksums."""
    from torchvision import datasets

    if name == "svhn":  # only the splits asked for: the training split alone is 182 MB
        for split, file in _SVHN_FILES.items():
            if file in files:
                datasets.SVHN(str(root), split=split, download=True)
        return
    cls = {"fashion_mnist": datasets.FashionMNIST, "mnist": datasets.MNIST}.get(name)
    for train in (True, False):
        (cls or datasets.CIFAR10)(str(root), train=train, download=True)


def _load_idx(name: str, root: Path, download: bool) -> Raw:
    directory = _find(name, root, list(_IDX_STEMS.values()), download)

    def read(key: str) -> torch.Tensor:
        path = directory / _IDX_STEMS[key]
        path = path if path.is_file() else path.with_name(f"{path.name}.gz")
        array = read_idx(path, "images" if key.endswith("images") else "labels")
        return torch.from_numpy(array.copy())

    x_train, y_train, x_test, y_test = (read(key) for key in _IDX_STEMS)
    for x, y, split in ((x_train, y_train, "train"), (x_test, y_test, "t10k")):
        if len(x) != len(y):
            raise DataError(f"{directory}: {split} files hold {len(x)} images and {len(y)} labels")
    classes = _FASHION_CLASSES if name == "fashion_mnist" else _TEN_DIGITS
    return Raw(
        "classification",
        x_train[:, None],
        y_train.long(),
        x_test[:, None],
        y_test.long(),
        classes,
        str(directory),
    )


def _load_cifar10(root: Path, download: bool) -> Raw:
    directory = _find("cifar10", root, [*_CIFAR_TRAIN, "test_batch", "batches.meta"], download)
    classes = read_pickle(directory / "batches.meta").get("label_names")
    if not isinstance(classes, list) or len(classes) != 10:
        raise DataError(f"{directory / 'batches.meta'}: 'label_names' must list 10 classes")
    x_train, y_train = cifar_batches(directory, _CIFAR_TRAIN)
    x_test, y_test = cifar_batches(directory, ("test_batch",))
    return Raw(
        "classification",
        x_train,
        y_train,
        x_test,
        y_test,
        tuple(str(c) for c in classes),
        str(directory),
    )


def load_svhn(root: Path, download: bool, splits: tuple[str, ...] = ("train", "test")) -> Raw:
    """The SVHN splits asked for (a split not asked for is empty)."""
    directory = _find("svhn", root, [_SVHN_FILES[split] for split in splits], download)
    loaded = {split: svhn_split(directory / _SVHN_FILES[split]) for split in splits}
    empty = (torch.zeros(0, 3, 32, 32, dtype=torch.uint8), torch.zeros(0, dtype=torch.int64))
    train, test = loaded.get("train", empty), loaded.get("test", empty)
    return Raw("classification", *train, *test, _TEN_DIGITS, str(directory))


def load_digits(seed: int) -> Raw:
    """scikit-learn's digits resized to 28×28 in ``[0, 1]``, split at random by ``seed``."""
    from sklearn import datasets

    images, labels = datasets.load_digits(return_X_y=True)
    x = torch.as_tensor(images, dtype=torch.float64).view(-1, 1, 8, 8) / DIGITS_MAX_VALUE
    x = torch.nn.functional.interpolate(x, size=(DIGITS_SIDE, DIGITS_SIDE), mode="bilinear")
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(len(x)))
    n_train = round(len(x) * TRAIN_FRACTION)
    y = torch.as_tensor(labels, dtype=torch.int64)
    train, test = perm[:n_train], perm[n_train:]
    return Raw("classification", x[train], y[train], x[test], y[test], _TEN_DIGITS, "sklearn")


def load_raw(name: str, root: Path, download: bool, seed: int) -> Raw:
    """The data set ``name`` as stored (before subsets and normalisation)."""
    if name in ("fashion_mnist", "mnist"):
        return _load_idx(name, root, download)
    if name == "cifar10":
        return _load_cifar10(root, download)
    if name == "svhn":
        return load_svhn(root, download)
    if name == "digits":
        return load_digits(seed)
    sine = make_sine(seed=seed)
    return Raw(
        "regression", sine.x_train, sine.y_train, sine.x_test, sine.y_test, None, "make_sine"
    )
