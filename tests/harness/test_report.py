import csv
import io
import json
import math

import numpy as np
import pandas as pd
import pytest

from amp.io import CorruptFileError
from harness import figures, report
from harness.metrics import classification_metrics
from harness.predictions import Predictions

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_predictions(seed=0, n=60, k=4, method="mp", epochs=3):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, k, n)
    history = [
        {"epoch": e, "seconds": 0.5 * e, "test": {"accuracy": 0.5 + 0.1 * e, "nll": 1.0 / e}}
        for e in range(1, epochs + 1)
    ]
    meta = {
        "method": method,
        "history": history,
        "train_seconds": sum(h["seconds"] for h in history),
        "predict_seconds": 0.25,
        "parameters": 1234,
        "config": {"epochs": epochs},
    }
    return Predictions(probs=probs, labels=labels, probs_ood=probs[:10, ::-1].copy(), metadata=meta)


def test_run_record_scores_and_timings():
    pred = fake_predictions()
    record = report.run_record(
        pred,
        dataset="d",
        arch="a",
        method="mp",
        seed=3,
        benchmark={"job_seconds": 9.0, "max_rss_mb": 100.0},
    )
    expected = classification_metrics(pred.probs, pred.labels, pred.probs_ood)
    for key, value in expected.items():
        assert record["metrics"][key] == pytest.approx(value, nan_ok=True)
    confidence = pred.probs.max(axis=1).mean()
    assert record["metrics"]["confidence_mean"] == pytest.approx(confidence)
    assert record["metrics"]["overconfidence"] == pytest.approx(confidence - expected["accuracy"])
    assert record["timing"]["train_seconds"] == pytest.approx(3.0)
    assert record["timing"]["seconds_per_epoch"] == pytest.approx(1.0)  # (0.5 + 1 + 1.5) / 3
    assert record["timing"]["job_seconds"] == 9.0
    assert (record["seed"], record["epochs"], record["parameters"]) == (3, 3, 1234)
    json.dumps(record)  # JSON-serialisable


def test_read_benchmark(tmp_path):
    path = tmp_path / "b.tsv"
    path.write_text("s\th:m:s\tmax_rss\tmax_vms\n12.5\t0:00:12\t\t300\n")
    out = report.read_benchmark(path)
    assert out["job_seconds"] == 12.5
    assert math.isnan(out["max_rss_mb"])  # Snakemake leaves fields of very short jobs empty
    (tmp_path / "empty.tsv").write_text("s\th:m:s\n")
    with pytest.raises(ValueError, match="no data row"):
        report.read_benchmark(tmp_path / "empty.tsv")


def make_runs():
    rows = []
    for method, accs in {"mp": [0.80, 0.82, 0.84], "adamw": [0.9, 0.9, 0.93]}.items():
        for seed, acc in enumerate(accs):
            rows.append(
                {
                    "dataset": "fashion_mnist",
                    "arch": "mlp",
                    "method": method,
                    "seed": seed,
                    "accuracy": acc,
                    "nll": 1 - acc,
                    "seconds_per_epoch": 10.0 if method == "mp" else 0.1,
                    "parameters": 269322,
                }
            )
    rows.append({**rows[0], "method": "ivon_mean", "seed": 0, "accuracy": 0.7})
    return pd.DataFrame(rows)


def test_aggregate_mean_and_standard_error():
    summary = report.aggregate(make_runs()).set_index("method")
    accs = np.array([0.80, 0.82, 0.84])
    assert summary.loc["mp", "n_seeds"] == 3
    assert summary.loc["mp", "accuracy_mean"] == pytest.approx(accs.mean())
    assert summary.loc["mp", "accuracy_se"] == pytest.approx(accs.std(ddof=1) / np.sqrt(3))
    assert summary.loc["ivon_mean", "n_seeds"] == 1
    assert math.isnan(summary.loc["ivon_mean", "accuracy_se"])  # one seed: no standard error


def test_summary_round_trip(tmp_path):
    runs = make_runs()
    summary = report.aggregate(runs)
    report.write_summary(runs, summary, tmp_path / "s.json", tmp_path / "s.csv")
    data = json.loads((tmp_path / "s.json").read_text())
    assert len(data["runs"]) == len(runs)
    assert len(data["aggregate"]) == 3
    back = report.read_summary(tmp_path / "s.json").set_index("method")
    assert back.loc["mp", "accuracy_mean"] == pytest.approx(0.82)
    assert math.isnan(back.loc["ivon_mean", "accuracy_se"])
    assert pd.read_csv(tmp_path / "s.csv").shape[0] == 3


@pytest.mark.parametrize("content", ['{"method": "mp", "metr', '{"method": "mp"}', "[1, 2]"])
def test_damaged_metrics_and_summary_files_are_named(tmp_path, content):
    path = tmp_path / "metrics.json"
    path.write_text(content)
    with pytest.raises(CorruptFileError, match=f"{path} is damaged .* delete it and rerun"):
        report.load_runs([path])
    with pytest.raises(CorruptFileError, match=f"{path} is damaged"):
        report.read_summary(path)


def test_render_table_orders_methods_and_defines_every_column():
    summary = report.aggregate(make_runs())
    tables = report.render_table(summary, "fashion_mnist", "mlp", notes=["**Data**: note"])
    md = tables["md"].splitlines()
    rows = [line for line in md if line.startswith("| ") and not line.startswith("| Method")]
    assert [r.split(" | ")[0] for r in rows] == ["| AdamW", "| IVON@mean", "| MP"]
    mp = rows[2]
    se = np.array([0.80, 0.82, 0.84]).std(ddof=1) / np.sqrt(3)
    assert f"82.00 ± {100 * se:.2f}" in mp
    assert "269,322" in mp
    header = next(line for line in md if line.startswith("| Method"))
    for column in report.COLUMNS:
        if column.label in header:
            assert f"**{column.label}**: {column.definition}" in tables["md"]
    assert "ECE-15" not in header  # no data, no column
    assert "**Data**: note" in tables["md"]

    parsed = list(csv.DictReader(io.StringIO(tables["csv"])))
    assert [p["method"] for p in parsed] == ["adamw", "ivon_mean", "mp"]
    assert float(parsed[2]["accuracy_mean"]) == pytest.approx(0.82)

    tex = tables["tex"]
    assert r"\toprule" in tex
    assert r"\bottomrule" in tex
    assert r"$82.00 \pm" in tex
    assert r"Acc. (\%)" in tex
    assert tex.count(r"\\") == 1 + 3  # header + three methods


def test_render_table_unknown_pair():
    with pytest.raises(ValueError, match="no results"):
        report.render_table(report.aggregate(make_runs()), "cifar10", "mlp")


def test_protocol_notes_say_how_to_reproduce():
    config = {
        "paths": {"results": "results/x", "reports": "reports/x"},
        "device": "cpu",
        "training": {"epochs": 3, "batch_size": 128},
        "experiments": {
            "fashion_mnist": {
                "archs": ["mlp"],
                "methods": ["mp"],
                "seeds": [0, 1],
                "subset": 500,
                "ood": {"name": "digits", "normalization": "reference"},
            }
        },
        "methods": {"mp": {"dtype": "float32"}, "adamw": {"dtype": "float32"}},
    }
    notes = "\n".join(report.protocol_notes(config, "fashion_mnist", "mlp"))
    assert "training subset 500" in notes
    assert "OOD: digits" in notes
    assert "3 epochs" in notes
    assert "dtype float32" in notes
    assert "AdamW" not in notes  # not a method of this experiment
    assert "results/x/fashion_mnist/mlp/<method>/seed<seed>/metrics.json" in notes


def test_reliability_bins_by_hand():
    probs = np.array([[0.95, 0.05], [0.55, 0.45], [0.4, 0.6], [0.9, 0.1]])
    labels = np.array([0, 1, 1, 1])
    bins = figures.reliability_bins(probs, labels, n_bins=2)
    # confidences 0.95, 0.55, 0.6, 0.9 all fall in (0.5, 1]; correct: yes, no, yes, no
    assert bins["count"].tolist() == [4]
    assert bins["confidence"].iloc[0] == pytest.approx(0.75)
    assert bins["accuracy"].iloc[0] == pytest.approx(0.5)
    bins10 = figures.reliability_bins(probs, labels, n_bins=10)
    # right-closed bins: 0.55 and 0.6 share (0.5, 0.6], 0.9 is in (0.8, 0.9], 0.95 in (0.9, 1]
    assert bins10["count"].tolist() == [2, 1, 1]
    assert bins10["upper"].tolist() == pytest.approx([0.6, 0.9, 1.0])
    with pytest.raises(ValueError, match="n_bins"):
        figures.reliability_bins(probs, labels, n_bins=0)


def test_figures_are_written(tmp_path):
    preds = {m: fake_predictions(i, method=m) for i, m in enumerate(["mp", "adamw", "ivon"])}
    path = figures.plot_reliability(
        {m: (p.probs, p.labels) for m, p in preds.items()}, tmp_path / "rel.png", title="t"
    )
    assert path.read_bytes().startswith(PNG_MAGIC)
    records = [
        report.run_record(p, dataset="d", arch="a", method=m, seed=s)
        for s in (0, 1)
        for m, p in preds.items()
    ]
    for plot, name in (
        (figures.plot_learning_curves, "curves.png"),
        (figures.plot_epoch_seconds, "seconds.png"),
    ):
        out = plot(records, tmp_path / name, title="t")
        assert out.read_bytes().startswith(PNG_MAGIC)
        assert out.stat().st_size > 1000
    # runs without per-epoch scores still give a (placeholder) figure
    for record in records:
        record["history"] = [{"epoch": 1, "seconds": 1.0}]
    assert figures.plot_learning_curves(records, tmp_path / "empty.png").exists()
