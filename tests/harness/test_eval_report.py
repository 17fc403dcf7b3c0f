"""Per-epoch, selective, shift and OOD tables and figures from metrics.json records."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
from PIL import Image

from harness import eval_figures, eval_report, metrics
from harness.eval_sets import SetPredictions
from harness.predictions import Predictions
from harness.report import aggregate, load_runs, render_table, run_record, write_summary

METHODS = ("adamw", "ivon", "ivon_mean", "mp")


def fake_probs(rng: np.random.Generator, labels: np.ndarray, sharpness: float) -> np.ndarray:
    logits = rng.normal(size=(len(labels), 4)) + sharpness * np.eye(4)[labels]
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True)


def fake_record(method: str, seed: int, epochs: int = 3) -> dict:
    """A run record as the pipeline writes it: history, selective curve and set scores."""
    rng = np.random.default_rng([seed, METHODS.index(method)])
    labels = rng.integers(0, 4, size=200)
    history = []
    for epoch in range(1, epochs + 1):
        probs = fake_probs(rng, labels, 1.0 + epoch)
        test = metrics.summary_metrics(probs, labels)
        history.append({"epoch": epoch, "seconds": 2.0 + seed, "test": test})
    probs = fake_probs(rng, labels, 1.0 + epochs)
    ood = fake_probs(rng, rng.integers(0, 4, size=50), 0.3)
    predictions = Predictions(
        probs=probs,
        labels=labels,
        probs_ood=ood,
        metadata={"history": history, "train_seconds": 9.0, "parameters": 10},
    )
    sub = labels[:100]
    sets = SetPredictions(
        probs={
            "clean": probs[:100],
            "rotation_90": fake_probs(rng, sub, 0.5),
            "contrast_5": fake_probs(rng, sub, 1.0),
            "ood_flipped": fake_probs(rng, sub, 0.0),
        },
        labels={"clean": sub, "rotation_90": sub, "contrast_5": sub},
        metadata={
            "sets": [
                {"name": "clean", "family": "shift", "kind": "clean", "intensity": 0.0},
                {"name": "rotation_90", "family": "shift", "kind": "rotation", "intensity": 90.0},
                {"name": "contrast_5", "family": "shift", "kind": "contrast", "intensity": 5.0},
                {"name": "ood_flipped", "family": "ood", "kind": "flipped", "intensity": None},
            ],
            "skipped": {"mnist": "not on disk"},
            "predict_seconds": 0.5,
        },
    )
    record = run_record(
        predictions,
        dataset="fashion_mnist",
        arch="mlp",
        method=method,
        seed=seed,
        sets=sets,
        ood_name="digits",
    )
    return json.loads(json.dumps(record))  # as read back from metrics.json


@pytest.fixture(scope="module")
def records():
    return [fake_record(m, s) for m in METHODS for s in (0, 1, 2)]


def test_run_record_has_the_curve_and_the_set_scores(records):
    record = records[0]
    assert len(record["selective"]["rejection"]) == 100
    assert record["selective"]["accuracy"][0] == pytest.approx(record["metrics"]["accuracy"])
    assert {r["kind"] for r in record["sets"]["shift"]} == {"clean", "rotation", "contrast"}
    assert {(r["set"], r["score"]) for r in record["sets"]["ood"]} == {
        (s, k) for s in ("digits", "flipped") for k in ("entropy", "max_prob")
    }
    assert record["timing"]["sets_predict_seconds"] == 0.5


def test_epochs_aggregate_over_seeds(records):
    frame = eval_report.epoch_frame(records)
    assert len(frame) == 4 * 3 * 3
    assert frame[frame["seed"] == 1]["seconds"].tolist()[:3] == [3.0, 6.0, 9.0]
    table = eval_report.aggregate_epochs(frame)
    assert len(table) == 4 * 3
    row = table[(table["method"] == "mp") & (table["epoch"] == 2)].iloc[0]
    values = frame[(frame["method"] == "mp") & (frame["epoch"] == 2)]["overconfidence"]
    assert row["overconfidence_mean"] == pytest.approx(values.mean())
    assert row["overconfidence_se"] == pytest.approx(values.std(ddof=1) / math.sqrt(3))
    assert row["n_seeds"] == 3


def test_epochs_travel_through_the_summary(records, tmp_path):
    paths = []
    for i, record in enumerate(records):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(record))
    runs = load_runs(paths)
    epochs = eval_report.aggregate_epochs(eval_report.epoch_frame(eval_report.load_records(paths)))
    write_summary(runs, aggregate(runs), tmp_path / "s.json", tmp_path / "s.csv", epochs=epochs)
    back = eval_report.read_epochs(tmp_path / "s.json")
    assert back["ece_15_mean"].tolist() == pytest.approx(epochs["ece_15_mean"].tolist())
    assert set(back["method"]) == set(METHODS)
    assert back["epoch"].tolist() == epochs["epoch"].tolist()


def test_epoch_table_lists_every_method_and_epoch(records):
    out = eval_report.render_epoch_table(records, "fashion_mnist", "mlp")
    rows = [
        line for line in out["md"].splitlines() if line.startswith("| ") and "Epoch" not in line
    ]
    assert len(rows) == len(METHODS) * 3
    mp2 = [r for r in eval_report.epoch_frame(records).to_dict("records")
           if r["method"] == "mp" and r["epoch"] == 2]  # fmt: skip
    accuracy = np.mean([r["accuracy"] for r in mp2]) * 100
    assert any(row.startswith(f"| MP | 2 | 6.0 ± 1.2 | {accuracy:.2f} ± ") for row in rows)
    csv_rows = out["csv"].strip().splitlines()
    assert len(csv_rows) == 1 + len(METHODS) * 3
    with pytest.raises(ValueError, match="evaluate_every_epoch"):
        eval_report.render_epoch_table([{**records[0], "history": []}], "d", "a")


def test_selective_table_columns(records, tmp_path):
    summary = aggregate(load_runs(_write(records, tmp_path)))
    table = render_table(
        summary, "fashion_mnist", "mlp", columns=eval_report.SELECTIVE_COLUMNS, name="selective"
    )
    header = next(csv.reader(io.StringIO(table["csv"])))
    assert header[:2] == ["method", "n_seeds"]
    keys = [c.key for c in eval_report.SELECTIVE_COLUMNS]
    assert header[2:] == [f"{k}_{s}" for k in keys for s in ("mean", "se")]
    assert "### fashion_mnist / mlp: selective" in table["md"]
    assert "tab:fashion_mnist-mlp-selective" in table["tex"]
    assert table["md"].count("\n| ") == 1 + len(METHODS)


def _write(records, tmp_path):
    paths = []
    for i, record in enumerate(records):
        paths.append(tmp_path / f"r{i}.json")
        paths[-1].write_text(json.dumps(record))
    return paths


def test_shift_table(records):
    table = eval_report.render_shift_table(records, "fashion_mnist", "mlp")
    rows = list(csv.DictReader(io.StringIO(table["csv"])))
    # clean is intensity 0 of both shifts: (0, 90) rotation and (0, 5) contrast, 4 methods
    assert len(rows) == 4 * 4
    assert {(r["kind"], float(r["intensity"])) for r in rows} == {
        ("rotation", 0.0),
        ("rotation", 90.0),
        ("contrast", 0.0),
        ("contrast", 5.0),
    }
    assert {"accuracy_mean", "accuracy_se", "ece_15_mean", "nll_mean"} <= set(rows[0])
    mp = [r for r in rows if r["method"] == "mp" and r["kind"] == "rotation"]
    expected = np.mean(
        [s["accuracy"] for r in records if r["method"] == "mp" for s in r["sets"]["shift"]
         if s["kind"] == "rotation"]
    )  # fmt: skip
    assert float(mp[1]["accuracy_mean"]) == pytest.approx(expected, rel=1e-5)
    assert "**rotation** (angle (°); 0 = clean)" in table["md"]
    assert table["md"].index("**rotation**") < table["md"].index("**contrast**")  # shift order
    with pytest.raises(ValueError, match="set evaluation.rotations"):
        eval_report.render_shift_table([{"method": "mp", "seed": 0}], "d", "a")


def test_ood_table(records):
    table = eval_report.render_ood_table(records, "fashion_mnist", "mlp")
    rows = list(csv.DictReader(io.StringIO(table["csv"])))
    assert len(rows) == 2 * 2 * 4  # sets x scores x methods
    header = table["md"].splitlines()[2]
    assert header.count("entropy") == 3
    assert header.count("max. prob.") == 3
    assert "Skipped **mnist**: not on disk." in table["md"]
    assert "digits 50" in table["md"]
    with pytest.raises(ValueError, match="enable evaluation.ood_sets"):
        eval_report.render_ood_table([{"method": "mp", "seed": 0}], "d", "a")


@pytest.mark.parametrize(
    ("plot", "min_size"),
    [
        (eval_figures.plot_calibration_curves, (1500, 700)),
        (eval_figures.plot_selective, (600, 450)),
        (eval_figures.plot_shift, (700, 900)),
    ],
)
def test_figures_render(records, tmp_path, plot, min_size):
    path = plot(records, tmp_path / "figure.png", title="fashion_mnist / mlp")
    width, height = Image.open(path).size
    assert width >= min_size[0]
    assert height >= min_size[1]
    empty = plot([], tmp_path / "empty.png")  # no data: a figure that says so
    assert Image.open(empty).size[0] > 100
