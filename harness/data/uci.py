"""The nine UCI regression sets with the standard train/test splits (PBP, MC dropout, TAGI).

The data ship with the repository as one archive per set, ``data/uci/<folder>.tar.gz``, holding
the original whitespace-separated text files (``data/uci/README.md`` gives their provenance):
``data.txt`` (all columns), ``index_features.txt`` / ``index_target.txt`` (0-based columns),
``index_train_K.txt`` / ``index_test_K.txt`` (0-based rows of split ``K``) and the protocol's
``n_splits.txt``, ``n_hidden.txt``, ``n_epochs.txt``. A directory ``<folder>/`` with the same
files is read as well.

:func:`load_uci` applies a split's index files exactly and normalises the inputs (per feature)
and the target with the mean and standard deviation of that split's training rows, as the
published protocol does. The :class:`~harness.data.Dataset` holds normalised targets; the
target's statistics are in its ``metadata`` and :func:`to_original_units` maps predictive means
and variances back, so that every metric is reported in the target's original units.

Example:
    >>> from harness.data import load_dataset
    >>> data = load_dataset("uci/boston", split=0)
    >>> len(data.x_train), len(data.x_test), data.input_shape
    (455, 51, (13,))
"""

from __future__ import annotations

import functools
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness.data.dataset import DataError, Dataset, DatasetNotFoundError, check_dtype
from harness.data.normalization import apply_normalization, fit_normalization

__all__ = [
    "UCI_ROOT",
    "UCI_SETS",
    "VALIDATION_FRACTION",
    "UCISet",
    "UCISplits",
    "describe_uci",
    "load_uci",
    "read_uci",
    "to_original_units",
    "uci_set",
]

UCI_ROOT = Path(__file__).resolve().parents[2] / "data" / "uci"
"""Where the repository keeps the archives (``data/uci/`` of the checkout)."""

VALIDATION_FRACTION = 0.2
"""Share of a training split held out to choose hyperparameters (the MC-dropout protocol)."""


@dataclass(frozen=True)
class UCISet:
    """One data set of the benchmark and its protocol.

    Attributes:
        name: Short name used in configurations and tables (``"boston"``).
        folder: Name of its archive and folder (``"bostonHousing"``).
        title: Name for tables.
        rows: Number of examples.
        inputs: Number of input features.
        splits: Number of standard splits.
        hidden: Hidden units of the protocol's network.
        epochs: Epochs of the protocol (PBP).
    """

    name: str
    folder: str
    title: str
    rows: int
    inputs: int
    splits: int
    hidden: int
    epochs: int


UCI_SETS: dict[str, UCISet] = {
    s.name: s
    for s in (
        UCISet("boston", "bostonHousing", "Boston housing", 506, 13, 20, 50, 40),
        UCISet("concrete", "concrete", "Concrete", 1030, 8, 20, 50, 40),
        UCISet("energy", "energy", "Energy", 768, 8, 20, 50, 40),
        UCISet("kin8nm", "kin8nm", "Kin8nm", 8192, 8, 20, 50, 40),
        UCISet("naval", "naval-propulsion-plant", "Naval propulsion", 11934, 16, 20, 50, 40),
        UCISet("power", "power-plant", "Power plant", 9568, 4, 20, 50, 40),
        UCISet("protein", "protein-tertiary-structure", "Protein", 45730, 9, 5, 100, 20),
        UCISet("wine", "wine-quality-red", "Wine (red)", 1599, 11, 20, 50, 40),
        UCISet("yacht", "yacht", "Yacht", 308, 6, 20, 50, 40),
    )
}
"""The nine sets in the order of the published tables (sizes as in ``data/uci/README.md``)."""


@dataclass(frozen=True, eq=False)
class UCISplits:
    """A data set as stored: all rows and the index files of every split.

    Attributes:
        spec: The set's :class:`UCISet`.
        x: Inputs ``(rows, inputs)`` float64, in original units.
        y: Targets ``(rows,)`` float64, in original units.
        train: Row indices of each split's training part, one int64 array per split.
        test: Row indices of each split's test part.
        source: The archive or directory read.
    """

    spec: UCISet
    x: np.ndarray
    y: np.ndarray
    train: tuple[np.ndarray, ...]
    test: tuple[np.ndarray, ...]
    source: str


def uci_set(name: str) -> UCISet:
    """The :class:`UCISet` called ``name`` (a ``ValueError`` lists the known names)."""
    try:
        return UCI_SETS[name]
    except KeyError:
        raise ValueError(f"unknown UCI data set {name!r}; known: {', '.join(UCI_SETS)}") from None


def read_uci(name: str, root: str | os.PathLike | None = None) -> UCISplits:
    """Read a set's data and split files (cached per ``(name, root)``) and check them.

    Args:
        name: A key of :data:`UCI_SETS`.
        root: Directory holding ``<folder>.tar.gz`` or ``<folder>/``; default :data:`UCI_ROOT`.

    Returns:
        The rows and the splits.

    Raises:
        ValueError: If ``name`` is unknown.
        DatasetNotFoundError: If neither the archive nor the folder exists.
        DataError: If a file is missing, unreadable, or disagrees with the protocol (sizes,
            indices out of range, overlapping train and test rows).
    """
    spec = uci_set(name)
    return _read_cached(spec, Path(root) if root is not None else UCI_ROOT)


@functools.lru_cache(maxsize=4)
def _read_cached(spec: UCISet, root: Path) -> UCISplits:
    archive, folder = root / f"{spec.folder}.tar.gz", root / spec.folder
    if archive.is_file():
        files, source = _archive_files(archive, spec.folder), archive
    elif folder.is_dir():
        files = {p.name: p.read_bytes() for p in folder.iterdir() if p.suffix == ".txt"}
        source = folder
    else:
        raise DatasetNotFoundError(
            f"UCI data set {spec.name!r} not found: neither {archive} nor {folder} exists. The "
            f"repository ships the archives in {UCI_ROOT}; restore them with `git checkout -- "
            "data/uci`, or pass the directory that holds them as root"
        )

    def text(file: str) -> np.ndarray:
        if file not in files:
            raise DataError(f"{source}: {file} is missing; restore the archive from the repository")
        try:
            return np.loadtxt(io.BytesIO(files[file]), ndmin=1)
        except ValueError as err:
            raise DataError(f"{source}: cannot parse {file} ({err})") from err

    data = text("data.txt")
    data = data.reshape(len(data), -1) if data.ndim == 1 else data
    features = text("index_features.txt").astype(np.int64)
    target = int(text("index_target.txt")[0])
    splits = int(text("n_splits.txt")[0])
    expected = (spec.rows, spec.inputs, spec.splits)
    if (len(data), len(features), splits) != expected:
        raise DataError(
            f"{source}: {len(data)} rows, {len(features)} inputs and {splits} splits, the "
            f"protocol has {expected[0]}, {expected[1]} and {expected[2]}; the files are damaged"
        )
    if features.max() >= data.shape[1] or target >= data.shape[1] or target in features:
        raise DataError(f"{source}: the column indices do not fit data.txt ({data.shape[1]} cols)")
    train, test = [], []
    for k in range(splits):
        rows_train = text(f"index_train_{k}.txt").astype(np.int64)
        rows_test = text(f"index_test_{k}.txt").astype(np.int64)
        _check_split_rows(source, k, rows_train, rows_test, spec.rows)
        train.append(rows_train)
        test.append(rows_test)
    x, y = data[:, features], data[:, target]
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise DataError(f"{source}: data.txt contains NaN or inf")
    return UCISplits(spec, x, y, tuple(train), tuple(test), str(source))


def _archive_files(path: Path, folder: str) -> dict[str, bytes]:
    """The ``.txt`` members of ``<folder>/`` in an archive, by file name."""
    try:
        with tarfile.open(path, "r:gz") as archive:
            members = [
                m for m in archive.getmembers() if m.isfile() and m.name.startswith(f"{folder}/")
            ]
            return {
                Path(m.name).name: archive.extractfile(m).read()
                for m in members
                if m.name.endswith(".txt")
            }
    except (OSError, EOFError, tarfile.TarError) as err:
        raise DataError(
            f"cannot read {path}: truncated or corrupt ({err}); restore it with "
            "`git checkout -- data/uci`"
        ) from err


def _check_split_rows(source: Path, k: int, train: np.ndarray, test: np.ndarray, rows: int) -> None:
    where = f"{source}: split {k}"
    both = np.concatenate([train, test])
    if len(train) == 0 or len(test) == 0 or both.min() < 0 or both.max() >= rows:
        raise DataError(f"{where}: row indices must be non-empty and lie in [0, {rows})")
    if len(np.unique(both)) != len(both):
        raise DataError(f"{where}: a row is repeated or in both the training and the test part")


def load_uci(
    name: str,
    split: int,
    *,
    root: str | os.PathLike | None = None,
    validation: bool = False,
    validation_seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> Dataset:
    """One split of a UCI set, normalised with its training rows' statistics.

    Args:
        name: A key of :data:`UCI_SETS` (``"boston"``, ..., ``"yacht"``).
        split: Split index ``K`` in ``[0, splits)``.
        root: Directory of the archives (default :data:`UCI_ROOT`).
        validation: Return the hyperparameter-selection problem instead: a seeded random
            :data:`VALIDATION_FRACTION` of the training rows becomes the "test" part, the rest
            the training part, normalised with that rest's statistics; the test rows are not
            touched.
        validation_seed: Seed of that partition (``np.random.default_rng([seed, split])``).
        dtype: Floating dtype of inputs and targets.

    Returns:
        A regression :class:`~harness.data.Dataset` named ``"uci/<name>"``: inputs ``(N, D)``
        normalised per feature (``normalization`` mode ``"per_channel"``, unbiased standard
        deviations, a constant feature divided by 1), targets ``(N, 1)`` normalised likewise.
        ``metadata`` holds ``target_mean`` and ``target_std`` (for :func:`to_original_units`),
        ``split``, ``validation`` and ``source``.

    Raises:
        ValueError: On an unknown name or a split out of range.
        DatasetNotFoundError, DataError: From :func:`read_uci`.
    """
    check_dtype(dtype)
    stored = read_uci(name, root)
    splits = stored.spec.splits
    if isinstance(split, bool) or not isinstance(split, int) or not 0 <= split < splits:
        raise ValueError(f"invalid split {split!r} for uci/{name}: it has splits 0..{splits - 1}")
    train, test = stored.train[split], stored.test[split]
    if validation:
        order = np.random.default_rng([validation_seed, split]).permutation(len(train))
        held_out = round(len(train) * VALIDATION_FRACTION)
        train, test = train[order[held_out:]], train[order[:held_out]]
    x_train, x_test = (torch.from_numpy(stored.x[rows]) for rows in (train, test))
    y_train, y_test = (torch.from_numpy(stored.y[rows])[:, None] for rows in (train, test))
    inputs = fit_normalization(x_train, "per_channel")
    targets = fit_normalization(y_train, "per_channel")
    mean, std = targets["mean"][0], targets["std"][0]
    return Dataset(
        name=f"uci/{name}",
        task="regression",
        x_train=apply_normalization(x_train, inputs).to(dtype),
        y_train=((y_train - mean) / std).to(dtype),
        x_test=apply_normalization(x_test, inputs).to(dtype),
        y_test=((y_test - mean) / std).to(dtype),
        input_shape=(stored.spec.inputs,),
        num_classes=None,
        classes=None,
        normalization=inputs,
        metadata={
            "source": stored.source,
            "split": split,
            "validation": validation,
            "validation_seed": validation_seed if validation else None,
            "target_mean": mean,
            "target_std": std,
        },
    )


def to_original_units(
    dataset: Dataset, mean: torch.Tensor | np.ndarray, var: torch.Tensor | np.ndarray | None = None
) -> tuple:
    """Map normalised predictive means (and variances) back to the target's units.

    ``mean · s + m`` and ``var · s²`` with the training target's mean ``m`` and standard
    deviation ``s`` from ``dataset.metadata``; targets are mapped by the same formula.

    Args:
        dataset: The data set the values belong to (from :func:`load_uci`).
        mean: Means or targets, any shape.
        var: Variances of the same shape, or ``None``.

    Returns:
        ``(mean, var)`` in original units (``var`` is ``None`` if not given).

    Raises:
        ValueError: If ``dataset`` carries no target statistics.
    """
    meta = dataset.metadata
    if "target_mean" not in meta or "target_std" not in meta:
        raise ValueError(
            f"data set {dataset.name!r} has no target statistics; only load_uci data sets "
            "have normalised targets"
        )
    m, s = meta["target_mean"], meta["target_std"]
    return mean * s + m, None if var is None else var * s**2


def describe_uci(
    name: str, splits: list[int] | None = None, root: str | os.PathLike | None = None
) -> dict:
    """JSON-friendly check of a set: source, sizes and target statistics of each split.

    Args:
        name: A key of :data:`UCI_SETS`.
        splits: Splits to describe (``None``: all).
        root: Directory of the archives.

    Returns:
        ``{"name", "source", "rows", "inputs", "splits": [{"split", "n_train", "n_test",
        "target_mean", "target_std"}, ...]}``.
    """
    stored = read_uci(name, root)
    chosen = range(stored.spec.splits) if splits is None else splits
    entries = []
    for k in chosen:
        data = load_uci(name, k, root=root)
        entries.append(
            {
                "split": k,
                "n_train": len(data.x_train),
                "n_test": len(data.x_test),
                "target_mean": data.metadata["target_mean"],
                "target_std": data.metadata["target_std"],
            }
        )
    return {
        "name": name,
        "source": stored.source,
        "rows": stored.spec.rows,
        "inputs": stored.spec.inputs,
        "splits": entries,
    }
