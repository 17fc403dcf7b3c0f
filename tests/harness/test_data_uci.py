"""The UCI loader: the shipped archives, the split files applied exactly, training statistics."""

from __future__ import annotations

import functools
import io
import math
import tarfile

import numpy as np
import pytest
import torch

from harness.data import DataError, DatasetNotFoundError, load_dataset
from harness.data.uci import (
    UCI_ROOT,
    UCI_SETS,
    VALIDATION_FRACTION,
    describe_uci,
    load_uci,
    to_original_units,
)
from harness.metrics import regression_metrics

# Training / test rows of split 0 (data/uci/README.md: rows, about 90 % / 10 %).
SPLIT_SIZES = {
    "boston": (455, 51),
    "concrete": (927, 103),
    "energy": (691, 77),
    "kin8nm": (7373, 819),
    "naval": (10741, 1193),
    "power": (8611, 957),
    "protein": (41157, 4573),
    "wine": (1439, 160),
    "yacht": (277, 31),
}
TOL = {torch.float64: 1e-12, torch.float32: 1e-5}


@functools.cache
def archive_members(name: str) -> dict[str, bytes]:
    """The files of a shipped archive, read independently of the loader."""
    folder = UCI_SETS[name].folder
    with tarfile.open(UCI_ROOT / f"{folder}.tar.gz") as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}


def archive_text(name: str, file: str) -> np.ndarray:
    """One text file of a shipped archive as an array."""
    raw = archive_members(name)[f"{UCI_SETS[name].folder}/{file}"]
    return np.loadtxt(io.BytesIO(raw), ndmin=1)


def write_fake_yacht(root, *, x=None, y=None, test_rows=None):
    """A folder ``root/yacht`` in the shipped layout: 308 rows, 6 inputs, 20 splits.

    Split ``K`` tests rows ``15 K .. 15 K + 14`` unless ``test_rows`` is given.
    """
    rng = np.random.default_rng(0)
    x = rng.normal(size=(308, 6)) if x is None else x
    y = rng.normal(size=308) if y is None else y
    folder = root / "yacht"
    folder.mkdir(parents=True)
    np.savetxt(folder / "data.txt", np.column_stack([x, y]))
    np.savetxt(folder / "index_features.txt", np.arange(6), fmt="%d")
    np.savetxt(folder / "index_target.txt", [6], fmt="%d")
    for file, value in (("n_splits.txt", 20), ("n_hidden.txt", 50), ("n_epochs.txt", 40)):
        (folder / file).write_text(f"{value}\n")
    for k in range(20):
        test = np.arange(15 * k, 15 * k + 15) if test_rows is None else np.asarray(test_rows)
        train = np.setdiff1d(np.arange(308), test)
        np.savetxt(folder / f"index_train_{k}.txt", train, fmt="%d")
        np.savetxt(folder / f"index_test_{k}.txt", test, fmt="%d")
    return folder


@pytest.mark.parametrize("name", list(UCI_SETS))
def test_every_split_is_disjoint_complete_and_of_the_documented_size(name):
    spec = UCI_SETS[name]
    for k in range(spec.splits):
        data = load_uci(name, k)
        assert (len(data.x_train), len(data.x_test)) == SPLIT_SIZES[name]
        assert data.input_shape == (spec.inputs,)
        train = archive_text(name, f"index_train_{k}.txt").astype(int)
        test = archive_text(name, f"index_test_{k}.txt").astype(int)
        assert len(np.intersect1d(train, test)) == 0
        assert np.array_equal(np.union1d(train, test), np.arange(spec.rows))


@pytest.mark.parametrize("name", ["boston", "naval"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_split_files_are_applied_exactly(name, dtype):
    """Un-normalised tensors equal the rows the index files name, in their order."""
    k = 7
    rows = archive_text(name, "data.txt")
    features = archive_text(name, "index_features.txt").astype(int)
    target = int(archive_text(name, "index_target.txt")[0])
    data = load_dataset(f"uci/{name}", split=k, dtype=dtype)
    mean = torch.tensor(data.normalization["mean"], dtype=torch.float64)
    std = torch.tensor(data.normalization["std"], dtype=torch.float64)
    scale = np.abs(rows[:, features]).max(axis=0)
    for part in ("train", "test"):
        index = archive_text(name, f"index_{part}_{k}.txt").astype(int)
        x = getattr(data, f"x_{part}").double() * std + mean
        y, _ = to_original_units(data, getattr(data, f"y_{part}")[:, 0].double().numpy())
        np.testing.assert_allclose(
            x.numpy(), rows[index][:, features], rtol=0, atol=TOL[dtype] * 10 * scale.max()
        )
        np.testing.assert_allclose(y, rows[index, target], rtol=TOL[dtype] * 10)


def test_normalisation_uses_the_training_rows_only(tmp_path):
    """Test rows with huge values change nothing of the training part or its statistics."""
    x = np.random.default_rng(1).normal(size=(308, 6))
    y = np.arange(308.0)
    write_fake_yacht(tmp_path / "a", x=x, y=y)
    x_big, y_big = x.copy(), y.copy()
    x_big[30:45] *= 1e6
    y_big[30:45] = -1e9
    write_fake_yacht(tmp_path / "b", x=x_big, y=y_big)
    a, b = load_uci("yacht", 2, root=tmp_path / "a"), load_uci("yacht", 2, root=tmp_path / "b")
    torch.testing.assert_close(a.x_train, b.x_train, rtol=0, atol=0)
    torch.testing.assert_close(a.y_train, b.y_train, rtol=0, atol=0)
    assert a.metadata["target_mean"] == b.metadata["target_mean"]
    train = np.setdiff1d(np.arange(308), np.arange(30, 45))
    assert a.metadata["target_mean"] == pytest.approx(y[train].mean(), rel=1e-14)
    assert a.metadata["target_std"] == pytest.approx(y[train].std(ddof=1), rel=1e-14)
    np.testing.assert_allclose(a.normalization["mean"], x[train].mean(0), rtol=1e-12)
    np.testing.assert_allclose(a.normalization["std"], x[train].std(0, ddof=1), rtol=1e-12)
    assert float(a.y_train.mean()) == pytest.approx(0.0, abs=1e-12)
    assert float(a.y_train.std()) == pytest.approx(1.0, rel=1e-12)
    # The test part is normalised with the training statistics, not its own.
    expected = (y[30:45] - y[train].mean()) / y[train].std(ddof=1)
    np.testing.assert_allclose(a.y_test[:, 0].numpy(), expected, rtol=1e-12)


def test_a_constant_feature_is_divided_by_one():
    """naval has two constant inputs: they become 0 instead of 0/0."""
    data = load_uci("naval", 0)
    constant = [i for i, s in enumerate(data.normalization["std"]) if s == 1.0]
    assert len(constant) == 2
    assert float(data.x_train[:, constant].abs().max()) < 1e-12
    assert torch.isfinite(data.x_train).all()


def test_metrics_in_original_units_by_hand(tmp_path):
    """Normalised predictions mapped back: ``μ s + m`` and ``σ² s²``, checked on numbers."""
    y = np.zeros(308)
    test = np.arange(15)
    y[test] = 3.0
    train = np.setdiff1d(np.arange(308), test)
    y[train] = np.where(train % 2 == 0, 8.0, 12.0)  # 147 and 146 rows: mean ≈ 10, std ≈ 2
    write_fake_yacht(tmp_path, y=y)
    data = load_uci("yacht", 0, root=tmp_path)
    m, s = y[train].mean(), y[train].std(ddof=1)
    assert data.metadata["target_mean"] == pytest.approx(m)
    assert s == pytest.approx(2.0034, abs=1e-4)
    mean, var = to_original_units(data, np.array([0.0, 1.0]), np.array([1.0, 0.25]))
    np.testing.assert_allclose(mean, [m, m + s])
    np.testing.assert_allclose(var, [s**2, s**2 / 4])
    targets, _ = to_original_units(data, data.y_test[:2, 0].numpy())
    np.testing.assert_allclose(targets, [3.0, 3.0], rtol=1e-12)
    rmse = math.sqrt(((3 - m) ** 2 + (3 - m - s) ** 2) / 2)
    ll = -0.5 * (math.log(2 * math.pi * s**2) + (3 - m) ** 2 / s**2)
    ll += -0.5 * (math.log(2 * math.pi * s**2 / 4) + (3 - m - s) ** 2 / (s**2 / 4))
    scores = regression_metrics(mean, var, targets)
    assert scores["rmse"] == pytest.approx(rmse, rel=1e-12)
    assert scores["nll"] == pytest.approx(-ll / 2, rel=1e-12)


def test_validation_part_is_a_seeded_fifth_of_the_training_rows(tmp_path):
    y = np.arange(308.0)  # a target that names its row
    write_fake_yacht(tmp_path, y=y)
    full = load_uci("yacht", 4, root=tmp_path)
    held = load_uci("yacht", 4, root=tmp_path, validation=True, validation_seed=3)
    again = load_uci("yacht", 4, root=tmp_path, validation=True, validation_seed=3)
    other = load_uci("yacht", 4, root=tmp_path, validation=True, validation_seed=4)

    def rows(data, part):
        values, _ = to_original_units(data, getattr(data, f"y_{part}")[:, 0].numpy())
        return set(np.rint(values).astype(int))

    n_train = len(full.x_train)
    assert len(held.x_test) == round(n_train * VALIDATION_FRACTION)
    assert len(held.x_train) + len(held.x_test) == n_train
    assert rows(held, "train") | rows(held, "test") == rows(full, "train")
    assert not rows(held, "test") & rows(full, "test")  # the test rows are not touched
    assert rows(held, "test") == rows(again, "test") != rows(other, "test")
    fit_rows = np.array(sorted(rows(held, "train")), dtype=float)
    assert held.metadata["target_mean"] == pytest.approx(fit_rows.mean(), rel=1e-12)
    assert held.metadata["validation"]
    assert not full.metadata["validation"]


def test_describe_reports_every_split():
    summary = describe_uci("yacht")
    assert [s["split"] for s in summary["splits"]] == list(range(20))
    assert all(s["n_train"] + s["n_test"] == 308 for s in summary["splits"])


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: load_dataset("uci/boston"), ValueError, "split=0"),
        (lambda: load_dataset("uci/boston", split=0, subset=10), ValueError, "without subset"),
        (lambda: load_dataset("uci/boston", split=0, normalization="global"), ValueError, "per"),
        (lambda: load_dataset("uci/boston", split=20), ValueError, "splits 0..19"),
        (lambda: load_dataset("uci/protein", split=5), ValueError, "splits 0..4"),
        (lambda: load_dataset("uci/bostn", split=0), ValueError, "known: boston"),
        (lambda: load_dataset("sine", split=0), ValueError, "UCI sets"),
    ],
    ids=["no-split", "subset", "normalization", "split-range", "protein-range", "name", "non-uci"],
)
def test_bad_requests_name_the_fix(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_missing_and_damaged_files(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="git checkout -- data/uci"):
        load_uci("yacht", 0, root=tmp_path / "nowhere")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "yacht.tar.gz").write_bytes(b"not a gzip file")
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_uci("yacht", 0, root=tmp_path / "broken")
    folder = write_fake_yacht(tmp_path / "overlap", test_rows=[0, 1, 2])
    np.savetxt(folder / "index_train_0.txt", np.arange(0, 308), fmt="%d")  # row 0..2 twice
    with pytest.raises(DataError, match="split 0: a row is repeated or in both"):
        load_uci("yacht", 0, root=tmp_path / "overlap")
    folder = write_fake_yacht(tmp_path / "short")
    np.savetxt(folder / "data.txt", np.zeros((300, 7)))
    with pytest.raises(DataError, match="300 rows"):
        load_uci("yacht", 0, root=tmp_path / "short")
    folder = write_fake_yacht(tmp_path / "missing")
    (folder / "index_test_19.txt").unlink()
    with pytest.raises(DataError, match="index_test_19.txt is missing"):
        load_uci("yacht", 0, root=tmp_path / "missing")
