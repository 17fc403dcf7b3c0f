from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from amp.io import CorruptFileError
from harness import metrics
from harness import predictions as predictions_module
from harness.predictions import Predictions

META = {"method": "amp", "dataset": "mnist", "arch": "mlp", "seed": 3, "timings": {"epoch": [1.5]}}


def make_classification(seed: int = 0, with_ood: bool = True) -> Predictions:
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(10), size=60).astype(np.float32)
    ood = rng.dirichlet(np.ones(10), size=25).astype(np.float32) if with_ood else None
    return Predictions(probs=probs, labels=rng.integers(0, 10, 60), probs_ood=ood, metadata=META)


def make_regression(seed: int = 0) -> Predictions:
    rng = np.random.default_rng(seed)
    x = np.linspace(-3, 3, 40)[:, None]
    return Predictions(
        mean=torch.from_numpy(np.sin(x[:, 0])),
        var=rng.uniform(0.1, 1.0, size=40),
        targets=np.sin(x[:, 0]) + rng.normal(0, 0.3, size=40),
        x=x,
        metadata={"method": "ivon", "seed": 0},
    )


def assert_same(a: Predictions, b: Predictions) -> None:
    assert a.kind == b.kind
    assert a.metadata == b.metadata
    assert a.arrays().keys() == b.arrays().keys()
    for name, array in a.arrays().items():
        assert array.dtype == b.arrays()[name].dtype
        np.testing.assert_array_equal(array, b.arrays()[name])


@pytest.mark.parametrize("make", [make_classification, make_regression])
def test_round_trip(tmp_path, make):
    original = make()
    path = original.save(tmp_path / "sub" / "predictions.npz")
    loaded = Predictions.load(path)
    assert_same(original, loaded)
    assert loaded.metrics() == original.metrics()
    assert [p.name for p in path.parent.iterdir()] == ["predictions.npz"]  # no temporary files


def test_optional_arrays_stay_absent(tmp_path):
    original = make_classification(with_ood=False)
    loaded = Predictions.load(original.save(tmp_path / "p.npz"))
    assert loaded.probs_ood is None
    assert "ood_auroc" not in loaded.metrics()


def test_metrics_dispatch():
    cls = make_classification()
    assert cls.kind == "classification"
    assert cls.metrics() == metrics.classification_metrics(cls.probs, cls.labels, cls.probs_ood)
    assert "ood_auroc" in cls.metrics()
    reg = make_regression()
    assert reg.kind == "regression"
    assert reg.metrics() == metrics.regression_metrics(reg.mean, reg.var, reg.targets)


def test_arrays_are_read_only_copies():
    probs = np.full((4, 2), 0.5)
    pred = Predictions(probs=probs, labels=np.zeros(4, dtype=int))
    probs[0, 0] = 0.9
    assert pred.probs[0, 0] == 0.5
    with pytest.raises(ValueError, match="read-only"):
        pred.probs[0, 0] = 1.0


def test_truncated_file_raises(tmp_path):
    path = make_classification().save(tmp_path / "p.npz")
    data = path.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 30):
        path.write_bytes(data[:cut])
        with pytest.raises(CorruptFileError, match="corrupt or truncated"):
            Predictions.load(path)
    path.write_bytes(b"not a zip file at all")
    with pytest.raises(CorruptFileError, match="corrupt or truncated"):
        Predictions.load(path)
    with pytest.raises(FileNotFoundError, match="no predictions file"):
        Predictions.load(tmp_path / "missing.npz")


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = make_classification(seed=1).save(tmp_path / "p.npz")

    def crash(handle, **arrays):
        handle.write(b"PK\x03\x04partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(predictions_module.np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        make_classification(seed=2).save(path)
    monkeypatch.undo()
    assert_same(Predictions.load(path), make_classification(seed=1))
    assert [p.name for p in tmp_path.iterdir()] == ["p.npz"]


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"probs": np.ones((2, 2)) / 2}, r"lacks \['format_version', 'kind', 'metadata'\]"),
        (
            {
                "format_version": np.array(99),
                "kind": np.array("regression"),
                "metadata": np.array("{}"),
            },
            "format version 99",
        ),
        (
            {
                "format_version": np.array(1),
                "kind": np.array("classification"),
                "metadata": np.array("{}"),
                "probs": np.ones((3, 2)) / 2,
                "labels": np.zeros(4, dtype=int),
            },
            r"inconsistent: labels shape \(4,\) does not match",
        ),
        (
            {
                "format_version": np.array(1),
                "kind": np.array("regression"),
                "metadata": np.array("{not json"),
                "mean": np.zeros(3),
                "var": np.ones(3),
                "targets": np.zeros(3),
            },
            "inconsistent",
        ),
        (
            {
                "format_version": np.array(1),
                "kind": np.array("classification"),
                "metadata": np.array("{}"),
                "mean": np.zeros(3),
                "var": np.ones(3),
                "targets": np.zeros(3),
            },
            "header says 'classification'",
        ),
    ],
)
def test_mismatched_files_raise(tmp_path, arrays, match):
    path = tmp_path / "p.npz"
    np.savez(path, **arrays)
    with pytest.raises(CorruptFileError, match=match):
        Predictions.load(path)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "got neither"),
        ({"probs": np.ones((2, 2)) / 2, "labels": [0, 1], "mean": np.zeros(2)}, "not both"),
        ({"probs": np.ones((2, 2)) / 2}, r"lack \['labels'\]"),
        ({"probs": np.ones(2) / 2, "labels": [0]}, r"probs must be \(N, K\)"),
        (
            {"probs": np.ones((2, 2)) / 2, "labels": [0, 1], "probs_ood": np.ones((2, 3)) / 3},
            "probs_ood",
        ),
        ({"mean": np.zeros(2), "var": np.ones(3), "targets": np.zeros(2)}, "var shape"),
        (
            {"mean": np.zeros(2), "var": np.ones(2), "targets": np.zeros(2), "x": np.zeros(3)},
            "x must",
        ),
        (
            {
                "mean": np.zeros(2),
                "var": np.ones(2),
                "targets": np.zeros(2),
                "metadata": {"a": np.float32(1)},
            },
            "JSON",
        ),
    ],
)
def test_invalid_construction_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Predictions(**kwargs)


def test_metadata_is_json_inside_the_npz(tmp_path):
    path = make_regression().save(tmp_path / "r.npz")
    with np.load(path, allow_pickle=False) as archive:
        assert json.loads(str(archive["metadata"])) == {"method": "ivon", "seed": 0}
        assert str(archive["kind"]) == "regression"
