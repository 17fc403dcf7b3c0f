from __future__ import annotations

import gzip
import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from amp.io import CorruptFileError
from harness import data
from harness.data import DataError, Dataset, DatasetNotFoundError, load_dataset, load_ood, sources

DTYPES = [torch.float64, torch.float32]
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}
IDX_STEMS = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]


def numpy_sine(x: np.ndarray) -> np.ndarray:
    return 0.5 * x + 0.2 * np.sin(2 * np.pi * x) + 0.3 * np.sin(4 * np.pi * x)


# ---- sine ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_sine_function_matches_formula(dtype):
    x = np.array([-0.5, -0.25, 0.0, 0.125, 0.25, 0.4, 3.7])
    expected = numpy_sine(x)
    assert expected[2] == 0.0
    assert expected[4] == pytest.approx(0.125 + 0.2)  # sin(π/2) = 1, sin(π) = 0
    got = data.sine_function(torch.tensor(x, dtype=dtype))
    assert got.dtype == dtype
    np.testing.assert_allclose(got.numpy(), expected, atol=TOL[dtype] * 10)


def test_sine_default_matches_reference_protocol():
    ds = data.make_sine()
    assert ds.task == "regression"
    assert ds.num_classes is None
    assert ds.classes is None
    assert ds.x_train.shape == (200, 1)
    assert ds.y_train.shape == (200, 1)
    assert ds.x_test.shape == (50, 1)
    assert ds.y_test.shape == (50, 1)
    assert ds.x_train.dtype == torch.float64
    x = torch.cat([ds.x_train, ds.x_test])
    assert x.min() >= -0.5
    assert x.max() < 0.5
    assert x.min() < -0.45
    assert x.max() > 0.45
    assert len(torch.unique(x)) == 250  # a split, not a resample
    assert ds.normalization["mode"] == "none"
    assert ds.metadata["seed"] == 98
    same = load_dataset("sine")  # the named loader gives the same data, unnormalised
    assert torch.equal(same.x_train, ds.x_train)
    assert torch.equal(same.y_test, ds.y_test)


def test_sine_noise_level_and_stretch():
    ds = data.make_sine(20000, sigma=0.05, seed=3)
    residual = (ds.y_train - data.sine_function(ds.x_train)).squeeze(1).numpy()
    assert residual.std(ddof=1) == pytest.approx(0.05, rel=0.03)
    assert abs(residual.mean()) < 0.003
    wide = data.make_sine(2000, stretch=2.0, offset=-0.5, seed=3)
    assert wide.x_train.min() >= -1.0
    assert wide.x_train.max() < 1.0
    assert wide.x_train.min() < -0.95
    assert wide.x_train.max() > 0.95
    exact = data.make_sine(100, sigma=0.0)
    torch.testing.assert_close(exact.y_train, data.sine_function(exact.x_train))


def test_sine_seeding():
    a, b, c = data.make_sine(seed=5), data.make_sine(seed=5), data.make_sine(seed=6)
    assert torch.equal(a.x_train, b.x_train)
    assert torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.x_train, c.x_train)
    f32 = data.make_sine(seed=5, dtype=torch.float32)
    assert f32.x_train.dtype == torch.float32
    torch.testing.assert_close(f32.x_train, a.x_train.float())


# ---- digits --------------------------------------------------------------------------------------


def test_digits_shape_range_split():
    ds = load_dataset("digits", normalization="none")
    assert ds.x_train.shape == (1438, 1, 28, 28)
    assert ds.x_test.shape == (359, 1, 28, 28)
    assert ds.input_shape == (1, 28, 28)
    assert ds.num_classes == 10
    assert ds.x_train.min() >= 0.0
    assert ds.x_train.max() <= 1.0
    assert ds.x_train.max() > 0.9
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    all_y = torch.cat([ds.y_train, ds.y_test]).numpy()
    np.testing.assert_array_equal(np.bincount(all_y), np.bincount(labels))
    # bilinear resizing keeps the mean intensity of each image (up to the border)
    means = torch.cat([ds.x_train, ds.x_test]).mean(dim=(1, 2, 3)).numpy()
    assert abs(np.sort(means).mean() - (images / 16.0).mean()) < 0.01
    again, other = load_dataset("digits", seed=0), load_dataset("digits", seed=1)
    assert torch.equal(again.y_train, ds.y_train)
    assert not torch.equal(other.y_train, ds.y_train)


# ---- Fashion-MNIST / MNIST (IDX) -----------------------------------------------------------------


@pytest.mark.parametrize("layout", ["root_gz", "torchvision_raw"])
def test_fashion_mnist_from_idx_files(tmp_path, fake_data, no_system_data, layout):
    if layout == "root_gz":
        arrays = fake_data.mnist(tmp_path)
    else:  # torchvision keeps uncompressed files in root/FashionMNIST/raw
        arrays = fake_data.mnist(tmp_path / "FashionMNIST" / "raw", gz=False)
    ds = load_dataset("fashion_mnist", root=tmp_path, normalization="none")
    assert ds.x_train.shape == (20, 1, 28, 28)
    assert ds.x_test.shape == (10, 1, 28, 28)
    np.testing.assert_array_equal(
        ds.x_train[:, 0].numpy() * 255, arrays["train-images-idx3-ubyte"].astype(float)
    )
    np.testing.assert_array_equal(ds.y_test.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert ds.y_train.dtype == torch.int64
    assert ds.classes[0] == "T-shirt/top"
    assert ds.classes[9] == "Ankle boot"
    assert ds.num_classes == 10


def test_mnist_from_torchvision_layout(tmp_path, fake_data):
    arrays = fake_data.mnist(tmp_path / "MNIST" / "raw", seed=4)
    ds = load_dataset("mnist", root=tmp_path, normalization="none", dtype=torch.float32)
    assert ds.classes == tuple("0123456789")
    assert ds.x_train.dtype == torch.float32
    np.testing.assert_array_equal(ds.y_train.numpy(), arrays["train-labels-idx1-ubyte"])


def test_read_idx_validates_header(tmp_path, fake_data):
    path = fake_data.idx(tmp_path / "labels", np.arange(7, dtype=np.uint8))
    np.testing.assert_array_equal(data.read_idx(path, "labels"), np.arange(7))
    with pytest.raises(DataError, match="not an IDX images file"):
        data.read_idx(path, "images")


# ---- normalisation -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_global_normalization_uses_train_statistics(tmp_path, fake_data, dtype):
    arrays = fake_data.mnist(tmp_path)
    ds = load_dataset("fashion_mnist", root=tmp_path, normalization="global", dtype=dtype)
    train = arrays["train-images-idx3-ubyte"] / 255.0
    test = arrays["t10k-images-idx3-ubyte"] / 255.0
    mean, std = train.mean(), train.std(ddof=1)  # unbiased, as normalize_X!
    assert ds.normalization == {
        "mode": "global",
        "mean": pytest.approx(mean),
        "std": pytest.approx(std),
    }
    assert ds.x_train.dtype == dtype
    assert float(ds.x_train.double().mean()) == pytest.approx(0.0, abs=TOL[dtype])
    assert float(ds.x_train.double().std()) == pytest.approx(1.0, abs=TOL[dtype])
    np.testing.assert_allclose(ds.x_test[:, 0].numpy(), (test - mean) / std, atol=TOL[dtype] * 10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_per_channel_normalization(tmp_path, fake_data, dtype):
    arrays = fake_data.cifar10(tmp_path)
    ds = load_dataset("cifar10", root=tmp_path, normalization="per_channel", dtype=dtype)
    train = arrays["x_train"].reshape(-1, 3, 32, 32) / 255.0
    mean = train.mean(axis=(0, 2, 3))
    std = train.transpose(1, 0, 2, 3).reshape(3, -1).std(axis=1, ddof=1)
    rtol = {torch.float64: 1e-12, torch.float32: 1e-6}[dtype]  # statistics of the cast pixels
    np.testing.assert_allclose(ds.normalization["mean"], mean, rtol=rtol)
    np.testing.assert_allclose(ds.normalization["std"], std, rtol=rtol)
    x = ds.x_train.double()
    torch.testing.assert_close(
        x.mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=TOL[dtype], rtol=0
    )
    per_channel_std = x.transpose(0, 1).reshape(3, -1).std(dim=1)
    torch.testing.assert_close(
        per_channel_std, torch.ones(3, dtype=torch.float64), atol=TOL[dtype], rtol=0
    )
    test = arrays["x_test"].reshape(-1, 3, 32, 32) / 255.0
    expected = (test - mean[None, :, None, None]) / std[None, :, None, None]
    np.testing.assert_allclose(ds.x_test.numpy(), expected, atol=TOL[dtype] * 10)


def test_constant_feature_is_not_divided_by_zero():
    x = torch.ones(5, 2, dtype=torch.float64)
    x[:, 1] = torch.arange(5.0)
    stats = data.fit_normalization(x, "per_channel")
    assert stats["std"][0] == 1.0
    assert stats["std"][1] == pytest.approx(math.sqrt(2.5))
    out = data.apply_normalization(x, stats)
    assert torch.all(out[:, 0] == 0)
    assert torch.isfinite(out).all()


# ---- subsets -------------------------------------------------------------------------------------


def test_subsets_are_seeded_nested_and_normalised(tmp_path, fake_data):
    fake_data.mnist(tmp_path, n_train=40, n_test=30)
    full = load_dataset("fashion_mnist", root=tmp_path, normalization="none")
    a = load_dataset("fashion_mnist", root=tmp_path, subset=10, test_subset=5, seed=1)
    b = load_dataset("fashion_mnist", root=tmp_path, subset=10, test_subset=5, seed=1)
    c = load_dataset("fashion_mnist", root=tmp_path, subset=10, test_subset=5, seed=2)
    assert a.x_train.shape[0] == 10
    assert a.x_test.shape[0] == 5
    assert torch.equal(a.x_train, b.x_train)
    assert torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.y_train, c.y_train) or not torch.equal(a.x_train, c.x_train)
    assert abs(float(a.x_train.mean())) < 1e-12  # statistics of the subset
    raw = load_dataset("fashion_mnist", root=tmp_path, subset=10, seed=1, normalization="none")
    rows = {tuple(row.flatten().tolist()) for row in full.x_train}
    assert all(tuple(row.flatten().tolist()) in rows for row in raw.x_train)
    bigger = load_dataset("fashion_mnist", root=tmp_path, subset=20, seed=1, normalization="none")
    big_rows = {tuple(row.flatten().tolist()) for row in bigger.x_train}
    assert all(tuple(row.flatten().tolist()) in big_rows for row in raw.x_train)
    with pytest.raises(ValueError, match="invalid subset: 41"):
        load_dataset("fashion_mnist", root=tmp_path, subset=41)
    with pytest.raises(ValueError, match="invalid test_subset: 0"):
        load_dataset("fashion_mnist", root=tmp_path, test_subset=0)


# ---- CIFAR-10 and SVHN ---------------------------------------------------------------------------


@pytest.mark.parametrize("python2", [True, False])
def test_cifar10_pickles(tmp_path, fake_data, python2):
    arrays = fake_data.cifar10(tmp_path, per_batch=3, n_test=5, python2=python2)
    ds = load_dataset("cifar10", root=tmp_path, normalization="none")
    assert ds.x_train.shape == (15, 3, 32, 32)
    assert ds.x_test.shape == (5, 3, 32, 32)
    assert ds.classes == tuple(json.loads(json.dumps(ds.classes)))  # plain strings
    assert ds.classes[1] == "car"
    assert ds.num_classes == 10
    i, c, h, w = 7, 2, 5, 30  # row layout: channel planes, each 32×32 row-major
    assert float(ds.x_train[i, c, h, w]) * 255 == pytest.approx(
        arrays["x_train"][i, c * 1024 + h * 32 + w]
    )
    np.testing.assert_array_equal(ds.y_train.numpy(), arrays["y_train"])
    np.testing.assert_array_equal(ds.y_test.numpy(), arrays["y_test"])


def test_svhn_mat_files(tmp_path, fake_data):
    arrays = fake_data.svhn(tmp_path)
    ds = load_dataset("svhn", root=tmp_path, normalization="none")
    assert ds.x_train.shape == (8, 3, 32, 32)
    assert ds.x_test.shape == (12, 3, 32, 32)
    expected = arrays["X_test"].transpose(3, 2, 0, 1) / 255.0  # (H, W, C, N) -> (N, C, H, W)
    np.testing.assert_allclose(ds.x_test.numpy(), expected, atol=1e-12)
    raw = arrays["y_test"].ravel()
    assert 10 in raw
    np.testing.assert_array_equal(ds.y_test.numpy(), np.where(raw == 10, 0, raw))


# ---- OOD -----------------------------------------------------------------------------------------


def test_ood_svhn_for_cifar10(tmp_path, fake_data):
    fake_data.cifar10(tmp_path)
    arrays = fake_data.svhn(tmp_path)
    ref = load_dataset("cifar10", root=tmp_path, normalization="per_channel")
    raw = torch.as_tensor(arrays["X_test"].transpose(3, 2, 0, 1) / 255.0)
    unnormalised = load_ood("svhn", ref, root=tmp_path, normalization="none")
    torch.testing.assert_close(unnormalised, raw)  # the official MP code's choice (spec G.6)
    mean = torch.tensor(ref.normalization["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(ref.normalization["std"]).view(1, 3, 1, 1)
    torch.testing.assert_close(load_ood("svhn", ref, root=tmp_path), (raw - mean) / std)
    own = load_ood("svhn", ref, root=tmp_path, normalization="own")
    torch.testing.assert_close(own.mean(dim=(0, 2, 3)), torch.zeros(3, dtype=own.dtype))
    sub = load_ood("svhn", ref, root=tmp_path, subset=4, dtype=torch.float32)
    assert sub.shape == (4, 3, 32, 32)
    assert sub.dtype == torch.float32
    with pytest.raises(ValueError, match=r"OOD set 'digits' has inputs \(1, 28, 28\)"):
        load_ood("digits", ref)


def test_ood_digits_for_fashion_mnist(tmp_path, fake_data):
    fake_data.mnist(tmp_path)
    ref = load_dataset("fashion_mnist", root=tmp_path)
    x = load_ood("digits", ref)
    raw = load_ood("digits", ref, normalization="none")
    assert x.shape == (1797, 1, 28, 28)
    assert raw.min() >= 0
    assert raw.max() <= 1
    mean, std = ref.normalization["mean"], ref.normalization["std"]
    torch.testing.assert_close(x, (raw - mean) / std)
    with pytest.raises(ValueError, match="unknown normalization: 'global'"):
        load_ood("digits", ref, normalization="global")


# ---- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("fashion_mnist", "apt-get install dataset-fashion-mnist"),
        ("mnist", "download=True"),
        ("cifar10", "cifar-10-batches-py"),
        ("svhn", "test_32x32.mat"),
    ],
)
def test_missing_dataset_says_how_to_get_it(tmp_path, no_system_data, name, hint):
    with pytest.raises(DatasetNotFoundError, match=f"dataset '{name}' not found") as info:
        load_dataset(name, root=tmp_path / "empty")
    message = str(info.value)
    assert hint in message
    assert "download=True" in message
    assert str(tmp_path / "empty") in message
    assert isinstance(info.value, FileNotFoundError)


def test_download_switch_fetches_then_reads(tmp_path, fake_data, no_system_data, monkeypatch):
    calls = []

    def fake_download(name, root, files):
        calls.append(name)
        fake_data.mnist(root / "FashionMNIST" / "raw", gz=False)

    monkeypatch.setattr(sources, "_download", fake_download)
    with pytest.raises(DatasetNotFoundError):
        load_dataset("fashion_mnist", root=tmp_path)
    assert calls == []  # nothing is fetched without download=True
    ds = load_dataset("fashion_mnist", root=tmp_path, download=True)
    assert calls == ["fashion_mnist"]
    assert len(ds.x_train) == 20

    def failing_download(name, root, files):
        raise RuntimeError("Name or service not known")

    monkeypatch.setattr(sources, "_download", failing_download)
    with pytest.raises(DatasetNotFoundError, match="downloading 'cifar10'.*service not known"):
        load_dataset("cifar10", root=tmp_path, download=True)


def test_truncated_gzip_names_the_file(tmp_path, fake_data):
    fake_data.mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DataError, match=f"cannot read {path}: truncated or corrupt"):
        load_dataset("fashion_mnist", root=tmp_path)


def test_truncated_idx_payload_names_the_file(tmp_path, fake_data):
    fake_data.mnist(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-100]))
    with pytest.raises(DataError, match=f"{path} is truncated or corrupt.*promises shape"):
        load_dataset("fashion_mnist", root=tmp_path)


def test_corrupt_cifar_and_svhn_files_name_the_file(tmp_path, fake_data):
    fake_data.cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match=f"cannot read {path}"):
        load_dataset("cifar10", root=tmp_path)
    fake_data.svhn(tmp_path)
    (tmp_path / "test_32x32.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(20))
    with pytest.raises(DataError, match="test_32x32.mat"):
        load_dataset("svhn", root=tmp_path)


def test_pickle_with_foreign_code_is_refused(tmp_path, fake_data):
    fake_data.cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(pickle.dumps({"data": Path("x")}, protocol=2))  # needs pathlib to load
    with pytest.raises(DataError, match="refusing to load global pathlib"):
        load_dataset("cifar10", root=tmp_path)


def test_bad_labels_are_rejected(tmp_path, fake_data):
    arrays = fake_data.mnist(tmp_path)
    labels = arrays["train-labels-idx1-ubyte"].copy()
    labels[3] = 12
    fake_data.idx(tmp_path / "train-labels-idx1-ubyte", labels)
    with pytest.raises(DataError, match=r"train split\): labels must lie in \[0, 9\], found 0..12"):
        load_dataset("fashion_mnist", root=tmp_path)
    fake_data.svhn(tmp_path / "svhn")
    from scipy.io import savemat

    savemat(
        tmp_path / "svhn" / "test_32x32.mat",
        {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[0], [3]], np.uint8)},
    )
    with pytest.raises(DataError, match="SVHN labels must lie in 1..10"):
        load_dataset("svhn", root=tmp_path / "svhn")


def _tiny(**changes) -> dict:
    fields = dict(
        name="tiny",
        task="classification",
        x_train=torch.zeros(4, 2),
        y_train=torch.tensor([0, 1, 2, 1]),
        x_test=torch.zeros(2, 2),
        y_test=torch.tensor([0, 2]),
        input_shape=(2,),
        num_classes=3,
        classes=("a", "b", "c"),
        normalization={"mode": "none", "mean": None, "std": None},
    )
    fields.update(changes)
    return fields


def test_dataset_validation():
    Dataset(**_tiny())
    x = torch.zeros(4, 2)
    x[1, 0] = float("nan")
    with pytest.raises(DataError, match=r"tiny \(train split\): inputs contain NaN or inf"):
        Dataset(**_tiny(x_train=x))
    with pytest.raises(DataError, match="inf"):
        Dataset(**_tiny(x_test=torch.tensor([[0.0, float("inf")], [0.0, 0.0]])))
    with pytest.raises(DataError, match=r"labels must lie in \[0, 2\], found -1..2"):
        Dataset(**_tiny(y_test=torch.tensor([-1, 2])))
    with pytest.raises(DataError, match="labels must be int64"):
        Dataset(**_tiny(y_train=torch.tensor([0.0, 1.0, 2.0, 1.0])))
    with pytest.raises(DataError, match="4 inputs but 3 targets"):
        Dataset(**_tiny(y_train=torch.tensor([0, 1, 2])))
    with pytest.raises(DataError, match="2 class names for 3 classes"):
        Dataset(**_tiny(classes=("a", "b")))


def test_argument_errors(tmp_path, fake_data):
    fake_data.mnist(tmp_path)
    assert load_dataset("Fashion-MNIST", root=tmp_path).name == "fashion_mnist"
    with pytest.raises(
        ValueError, match="unknown dataset name: 'imagenet'; known: sine, fashion_mnist"
    ):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="unknown normalization: 'zscore'; known: global"):
        load_dataset("sine", normalization="zscore")
    with pytest.raises(ValueError, match="invalid dtype"):
        load_dataset("sine", dtype=torch.int64)


# ---- summaries and caching -----------------------------------------------------------------------


def test_describe_and_save_round_trip(tmp_path, fake_data):
    fake_data.cifar10(tmp_path)
    ds = load_dataset("cifar10", root=tmp_path, subset=12, seed=3, dtype=torch.float32)
    describe = data.describe(ds)
    json.dumps(describe)  # JSON-serialisable
    assert describe["n_train"] == 12
    assert describe["n_test"] == 6
    assert describe["input_shape"] == [3, 32, 32]
    assert describe["class_counts_train"] == np.bincount(ds.y_train.numpy(), minlength=10).tolist()
    assert sum(describe["class_counts_test"]) == 6
    assert describe["x_train_mean"] == pytest.approx(0.0, abs=1e-5)
    path = tmp_path / "cache" / "cifar10.pt"
    data.save_dataset(ds, path)
    back = data.load_saved_dataset(path)
    for key in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(back, key), getattr(ds, key))
    assert back.classes == ds.classes
    assert back.normalization == ds.normalization
    assert back.metadata == ds.metadata
    assert back.input_shape == (3, 32, 32)
    assert data.describe(data.make_sine())["class_counts_train"] is None
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CorruptFileError):
        data.load_saved_dataset(path)


# ---- the real Fashion-MNIST (Debian package), when installed ------------------------------------


@pytest.mark.skipif(
    not all((data.FASHION_MNIST_SYSTEM_DIRS[0] / f"{stem}.gz").is_file() for stem in IDX_STEMS),
    reason="Debian package dataset-fashion-mnist is not installed",
)
def test_real_fashion_mnist(tmp_path):
    ds = load_dataset("fashion_mnist", root=tmp_path, normalization="none", dtype=torch.float32)
    assert ds.x_train.shape == (60000, 1, 28, 28)
    assert ds.x_test.shape == (10000, 1, 28, 28)
    assert data.describe(ds)["class_counts_train"] == [6000] * 10
    assert torch.bincount(ds.y_test).tolist() == [1000] * 10
    assert float(ds.x_train.double().mean()) == pytest.approx(0.2860, abs=5e-4)
    assert ds.metadata["source"] == str(data.FASHION_MNIST_SYSTEM_DIRS[0])
