import math

import numpy as np
import pytest
import torch

from amp.io import CorruptFileError
from harness import coverage
from harness.coverage_report import load_predictions, save_predictions, write_report


def calibrated_study(networks=400, points=60, scale=1.0, seed=0):
    """Predictives whose means scatter around the truth exactly as their variance says.

    With ``scale = 1`` every network's predictive is the true distribution of its error, so it
    covers the truth at the nominal rate; ``scale < 1`` shrinks the predictive variance
    (overconfident), ``scale > 1`` widens it.
    """
    rng = np.random.default_rng(seed)
    grid = np.linspace(-20, 20, points)
    truth = np.sin(grid)
    std = rng.uniform(0.5, 2.0, size=(networks, points))
    mean = truth + std * rng.standard_normal((networks, points))
    return grid, truth, mean, (scale * std) ** 2


@pytest.mark.parametrize("mass", [0.5, 0.6827, 0.9])
def test_a_calibrated_predictive_covers_at_the_nominal_rate(mass):
    grid, truth, mean, var = calibrated_study()
    z = coverage.z_scores(truth, mean, var)
    covered = coverage.coverage(z, 0.5 - mass / 2, 0.5 + mass / 2)
    # each grid point: a binomial fraction over 400 networks
    assert abs(covered.mean() - mass) < 4 * math.sqrt(mass * (1 - mass) / covered.size / 400)


def test_an_overconfident_predictive_undercovers_and_a_wide_one_overcovers():
    for scale, compare in ((0.5, np.less), (2.0, np.greater)):
        grid, truth, mean, var = calibrated_study(scale=scale)
        stats = coverage.summarize(grid, truth, mean, var, np.array([-0.5, 0.5]))
        nominal = {"1sigma": 0.68, "2sigma": 0.95}
        for band, value in nominal.items():
            assert compare(stats[f"pos_{band}"], value)
            assert compare(stats[f"neg_{band}"], value)


def test_correlation_statistic_equals_numpy_pearson():
    grid, truth, mean, var = calibrated_study(scale=0.7)
    stats = coverage.summarize(grid, truth, mean, var, np.array([-0.5, 0.5]))
    curves = coverage.coverage_curves(grid, truth, mean, var)
    masses = curves["mass"]
    pooled = np.corrcoef(
        np.concatenate([masses, masses]), np.concatenate([curves["pos"], curves["neg"]])
    )
    assert stats["correlation"] == pytest.approx(pooled[0, 1], abs=1e-12)
    assert stats["correlation_pos"] == pytest.approx(np.corrcoef(masses, curves["pos"])[0, 1])
    # by construction the curves are nearly linear in the mass
    assert stats["correlation"] > 0.99


def test_bands_and_grid_follow_the_reference():
    assert coverage.BANDS["2sigma"] == (0.025, 0.975)
    x = torch.tensor([[-0.5], [0.49]], dtype=torch.float64)
    grid = coverage.grid_for(x)
    assert grid[0, 0].item() == pytest.approx(-20.5)
    assert grid[1, 0] - grid[0, 0] == pytest.approx(coverage.GRID_STEP)
    assert grid[-1, 0].item() <= 20.49 + 1e-9


def test_bootstrap_intervals_contain_the_estimate():
    grid, truth, mean, var = calibrated_study(networks=60, scale=0.8)
    stats = coverage.summarize(grid, truth, mean, var, np.array([-0.5, 0.5]))
    intervals = coverage.bootstrap(grid, truth, mean, var, np.array([-0.5, 0.5]), samples=50)
    for key in ("pos_2sigma", "crps_pos"):
        low, high = intervals[key]
        assert low <= stats[key] + 1e-12
        assert high >= stats[key] - 1e-12


def test_invalid_study_settings_are_rejected():
    with pytest.raises(ValueError, match="variant"):
        coverage.StudyConfig(variant="bootstrap")
    with pytest.raises(ValueError, match="networks"):
        coverage.StudyConfig(networks=1)


@pytest.mark.parametrize("variant", ["initialisation", "data"])
def test_small_study_end_to_end(tmp_path, variant):
    config = coverage.StudyConfig(networks=3, iterations=3, variant=variant)
    arrays = coverage.train_mp(config)
    assert arrays["mean"].shape == (3, arrays["grid"].shape[0])
    assert np.all(arrays["var"] > 0)
    assert np.all(np.isfinite(arrays["mean"]))
    if variant == "data":  # a fresh dataset per network
        assert arrays["x_train"].shape == (3, 200)
        assert not np.allclose(arrays["x_train"][0], arrays["x_train"][1])
    methods = {"mp": {"mean": arrays.pop("mean"), "var": arrays.pop("var")}}
    save_predictions(tmp_path / "mp.npz", arrays, methods)
    study, loaded = load_predictions(tmp_path / "mp.npz")
    assert np.array_equal(loaded["mp"]["mean"], methods["mp"]["mean"])
    summary = write_report(
        {variant: [str(tmp_path / "mp.npz")]},
        summary=tmp_path / "summary.json",
        table_md=tmp_path / "table.md",
        table_csv=tmp_path / "table.csv",
        figures={variant: tmp_path / "figure.png"},
        samples=5,
    )
    assert (tmp_path / "figure.png").stat().st_size > 1000
    assert "paper (reference code)" in (tmp_path / "table.md").read_text()
    if variant == "initialisation":
        assert -1 <= summary["correlation"] <= 1 or math.isnan(summary["correlation"])
        assert set(summary["median_coverage"]) == {"x<-10", "x>10"}


def test_corrupt_prediction_file_is_reported(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(CorruptFileError, match="bad.npz"):
        load_predictions(tmp_path / "bad.npz")


def test_every_network_visits_the_shared_data_in_its_own_order():
    x, y = coverage.study_data(coverage.StudyConfig())
    xs, ys = coverage.network_orders(x, y, networks=4, seed=0)
    assert xs.shape == (4, *x.shape)
    for r in range(4):  # a permutation of the same pairs
        order = torch.argsort(xs[r, :, 0])
        torch.testing.assert_close(xs[r][order], x[torch.argsort(x[:, 0])])
        torch.testing.assert_close(ys[r][order], y[torch.argsort(x[:, 0])])
    assert not torch.equal(xs[0], xs[1])
    again, _ = coverage.network_orders(x, y, networks=4, seed=0)
    assert torch.equal(again, xs)
