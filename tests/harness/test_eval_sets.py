"""Extra evaluation sets: built from the test images, predicted, saved, and scored."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from amp.io import CorruptFileError
from harness import metrics
from harness.data import Dataset, DatasetNotFoundError, apply_normalization, fit_normalization
from harness.eval_sets import (
    SetPredictions,
    SetsConfig,
    build_eval_sets,
    predict_sets,
    score_sets,
    to_pixels,
)
from harness.ood_sets import synthetic_ood
from harness.shift import shift_images


def image_data(mode="per_channel", n_test=40, channels=1, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    raw = torch.rand(n_test + 30, channels, 12, 12, generator=g, dtype=dtype) ** 2
    stats = fit_normalization(raw[:30], mode)
    y = torch.arange(n_test + 30) % 3
    return Dataset(
        name="toy",
        task="classification",
        x_train=apply_normalization(raw[:30], stats),
        y_train=y[:30],
        x_test=apply_normalization(raw[30:], stats),
        y_test=y[30:],
        input_shape=(channels, 12, 12),
        num_classes=3,
        classes=None,
        normalization=stats,
    ), raw[30:]


@pytest.mark.parametrize("mode", ["global", "per_channel", "none"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_to_pixels_undoes_the_normalisation(mode, dtype):
    data, raw = image_data(mode, channels=3, dtype=dtype)
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    np.testing.assert_allclose(to_pixels(data.x_test, data.normalization), raw, atol=tol)


CONFIG = SetsConfig(
    subset=25,
    seed=3,
    rotations=(0, 90),
    corruptions=("gaussian_noise", "contrast"),
    severities=(1, 5),
    ood_sets=("flipped", "uniform_noise", "mnist", "toy", "digits"),
)


def test_sets_are_the_subset_shifted_and_normalised_like_the_test_inputs():
    data, raw = image_data()

    def load_named(name):
        if name == "mnist":
            raise DatasetNotFoundError("MNIST is not on disk\nhow to get it")
        return torch.zeros(50, 1, 12, 12, dtype=torch.float64)  # "digits": 50 images

    sets, skipped = build_eval_sets(data, CONFIG, load_named)
    names = [s.name for s in sets]
    assert names == [
        "clean",
        "rotation_90",
        "gaussian_noise_1",
        "gaussian_noise_5",
        "contrast_1",
        "contrast_5",
        "ood_flipped",
        "ood_uniform_noise",
        "ood_digits",
    ]
    assert skipped == {
        "mnist": "not on disk here (data.download, or its files under the data root)",
        "toy": "it is the in-distribution data set",
    }
    clean = sets[0]
    index = torch.from_numpy(np.sort(np.random.default_rng([3, 3]).permutation(40)[:25]))
    assert torch.equal(clean.inputs, data.x_test[index])
    assert torch.equal(clean.labels, data.y_test[index])
    pixels = raw[index]
    by_name = {s.name: s for s in sets}
    expected = apply_normalization(shift_images(pixels, "contrast", 5, seed=3), data.normalization)
    np.testing.assert_allclose(by_name["contrast_5"].inputs, expected, atol=1e-12)
    assert by_name["contrast_5"].intensity == 5.0
    assert by_name["rotation_90"].kind == "rotation"
    flipped = apply_normalization(synthetic_ood("flipped", pixels, seed=3), data.normalization)
    np.testing.assert_allclose(by_name["ood_flipped"].inputs, flipped, atol=1e-12)
    assert by_name["ood_flipped"].labels is None
    assert len(by_name["ood_digits"].inputs) == 25  # cut to the subset size
    again, _ = build_eval_sets(data, CONFIG, load_named)
    assert all(torch.equal(a.inputs, b.inputs) for a, b in zip(sets, again, strict=True))


def test_no_shift_no_clean_set_and_errors():
    data, _ = image_data()
    sets, skipped = build_eval_sets(data, SetsConfig(ood_sets=("inverted", "svhn")))
    assert [s.name for s in sets] == ["ood_inverted"]
    assert "svhn" in skipped
    assert SetsConfig().empty
    assert not SetsConfig(rotations=(0,)).empty
    with pytest.raises(ValueError, match="unknown corruptions"):
        SetsConfig(corruptions=("fog",))
    with pytest.raises(ValueError, match="severities"):
        SetsConfig(severities=(6,))


def fake_model(x: torch.Tensor) -> torch.Tensor:
    """Deterministic 3-class probabilities from the inputs' mean brightness."""
    z = x.flatten(1).mean(1, keepdim=True) * torch.tensor([[4.0, -2.0, 1.0]], dtype=x.dtype)
    return torch.softmax(z, dim=1)


def test_predictions_round_trip_and_refuse_damage(tmp_path):
    data, _ = image_data()
    sets, skipped = build_eval_sets(data, CONFIG)
    preds = predict_sets(fake_model, sets, skipped=skipped, metadata={"method": "mp"})
    assert preds.metadata["skipped"]["mnist"] == "no loader for named data sets was given"
    assert [s["name"] for s in preds.metadata["sets"]] == list(preds.probs)
    path = preds.save(tmp_path / "sets.npz")
    loaded = SetPredictions.load(path)
    assert loaded.metadata == preds.metadata
    for name in preds.probs:
        np.testing.assert_array_equal(loaded.probs[name], preds.probs[name])
    assert set(loaded.labels) == {s.name for s in sets if s.family == "shift"}
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CorruptFileError, match="corrupt"):
        SetPredictions.load(path)
    with pytest.raises(ValueError, match="invalid set name"):
        SetPredictions({"a b": np.ones((2, 2)) / 2})


def test_scores_match_metrics_and_sklearn():
    data, _ = image_data(n_test=60)
    sets, _ = build_eval_sets(
        data, SetsConfig(subset=None, rotations=(45,), ood_sets=("inverted",))
    )
    preds = predict_sets(fake_model, sets)
    test_probs = fake_model(data.x_test).numpy()
    digits = fake_model(torch.randn(30, 1, 12, 12, dtype=torch.float64)).numpy()
    scores = score_sets(preds, test_probs, {"digits": digits})
    shift = {(r["kind"], r["intensity"]): r for r in scores["shift"]}
    assert set(shift) == {("clean", 0.0), ("rotation", 45.0)}
    expected = metrics.summary_metrics(preds.probs["rotation_45"], preds.labels["rotation_45"])
    assert {k: shift[("rotation", 45.0)][k] for k in expected} == expected
    assert shift[("clean", 0.0)]["accuracy"] == metrics.accuracy(test_probs, data.y_test.numpy())
    rows = {(r["set"], r["score"]): r for r in scores["ood"]}
    assert set(rows) == {(s, k) for s in ("digits", "inverted") for k in ("entropy", "max_prob")}
    for (name, score), row in rows.items():
        out = digits if name == "digits" else preds.probs["ood_inverted"]
        s_in, s_out = (
            (-(p * np.log(p)).sum(1) if score == "entropy" else 1 - p.max(1))
            for p in (test_probs, out)
        )
        y = np.r_[np.zeros(len(s_in)), np.ones(len(s_out))]
        assert row["auroc"] == pytest.approx(roc_auc_score(y, np.r_[s_in, s_out]), abs=1e-12)
        assert row["aupr"] == pytest.approx(
            average_precision_score(y, np.r_[s_in, s_out]), abs=1e-12
        )
        assert row["n"] == len(out)
