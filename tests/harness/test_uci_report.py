"""The UCI report: the published registry's signs, the tables beside it, the figure."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from harness.data.uci import UCI_SETS
from harness.uci.published import load_published
from harness.uci.report import (
    FAILED_SPLIT_FACTOR,
    failed_splits,
    render_tables,
    summarize_runs,
    write_report,
)
from harness.uci.runs import UCIRun, save_run
from harness.uci.scoring import split_metrics

REGISTRY = Path(__file__).resolve().parents[2] / "configs" / "uci_published.yaml"


def test_shipped_registry_has_every_set_with_our_sign():
    sources, columns = load_published(REGISTRY)
    assert columns == ["pbp", "mc_dropout", "deep_ensembles", "tagi"]
    for source in sources.values():
        assert set(source.results) == set(UCI_SETS)
    raw = yaml.safe_load(REGISTRY.read_text())["sources"]
    # PBP prints NLL 2.57 on boston: the log-likelihood is -2.57; TAGI prints LL as it is.
    assert raw["pbp"]["results"]["boston"]["nll"] == [2.57, 0.09]
    assert sources["pbp"].results["boston"]["ll"].mean == -2.57
    assert sources["pbp"].results["boston"]["ll"].spread == 0.09
    assert sources["pbp"].results["kin8nm"]["ll"].mean == 0.90
    assert sources["tagi"].results["kin8nm"]["ll"].mean == 0.893
    assert sources["tagi"].results["kin8nm"]["ll"].spread is None
    assert sources["deep_ensembles"].results["naval"]["ll"].mean == 5.63


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"printed": "loglik", "results": {}}, "use 'll' or 'nll'"),
        ({"printed": "ll", "results": {"bostn": {"rmse": 1, "ll": 1}}}, "unknown data set"),
        ({"printed": "nll", "results": {"boston": {"rmse": 1, "ll": 1}}}, "exactly 'rmse' and"),
        ({"printed": "ll", "results": {"boston": {"rmse": [1, -1], "ll": 1}}}, "non-negative"),
        ({"printed": "ll", "results": {"boston": {"rmse": "3", "ll": 1}}}, "a number or"),
    ],
)
def test_malformed_registry_entries_are_named(tmp_path, entry, message):
    path = tmp_path / "published.yaml"
    path.write_text(yaml.safe_dump({"sources": {"x": entry}}))
    with pytest.raises(ValueError, match=message):
        load_published(path)


def fake_run(name, method, splits, offset, seed=0):
    """A run whose predictions are the targets plus noise, scored like a real one."""
    rng = np.random.default_rng(seed)
    run = UCIRun(name, method, settings={"method": method})
    for k in splits:
        y = rng.normal(10.0, 2.0, 40)
        mean, var = y + offset * rng.normal(size=40), np.full(40, offset**2)
        run.predictions[k] = {"mean": mean, "var": var, "y": y}
        run.records.append(
            {
                "split": k,
                "noise_var": 0.01,
                "validation_ll": {"0.01": -1.0},
                "metrics": split_metrics(mean, var, y),
                "train_seconds": 0.5,
                "selection_seconds": 2.0,
                "epochs": 3,
                "n_train": 100,
                "n_test": 40,
            }
        )
    return run


def test_tables_show_ours_with_standard_errors_and_published_as_printed():
    runs = {
        "yacht": {
            "mp": fake_run("yacht", "mp", [0, 1, 2], 0.5).__dict__,
            "adamw": fake_run("yacht", "adamw", [0, 1, 2], 1.0, 1).__dict__,
        },
        "boston": {"mp": fake_run("boston", "mp", [4], 2.0).__dict__},
    }
    summary = summarize_runs(runs)
    assert list(summary) == ["boston", "yacht"]  # the published tables' order
    sources, columns = load_published(REGISTRY)
    tables = render_tables(summary, sources, columns, notes=["- a protocol note"])
    md = tables["md"]
    rmse = [r["metrics"]["rmse"] for r in runs["yacht"]["mp"]["records"]]
    se = np.std(rmse, ddof=1) / math.sqrt(3)
    assert f"| Yacht | 3/20 | {np.mean(rmse):.3f} ± {se:.3f} |" in md  # 3 digits below 1
    assert "| Boston housing | 1/20 | " in md
    boston = next(line for line in md.splitlines() if line.startswith("| Boston housing"))
    assert boston.split(" | ")[3] == "–"  # AdamW did not run there: an empty cell, not a shift
    ll_table = md.split("### Test log-likelihood")[1].split("###")[0]
    boston_ll = next(line for line in ll_table.splitlines() if line.startswith("| Boston"))
    assert "| -2.57 ± 0.09 |" in boston_ll  # PBP prints NLL 2.57: shown as LL -2.57
    assert boston_ll.endswith("| -2.578 |")  # TAGI prints LL -2.578 and no spread
    rmse_table = md.split("### Test log-likelihood")[0]
    assert "| 1.02 ± 0.05 |" in rmse_table  # published digits as printed (PBP, yacht)
    assert "LL = −NLL" in md
    assert "- a protocol note" in md
    rows = list(csv.DictReader(io.StringIO(tables["csv"])))
    pbp = [r for r in rows if r["set"] == "boston" and r["source"] == "pbp" and r["metric"] == "ll"]
    assert float(pbp[0]["mean"]) == -2.57
    ours = [
        r for r in rows if r["set"] == "yacht" and r["column"] == "MP" and r["metric"] == "rmse"
    ]
    assert float(ours[0]["mean"]) == pytest.approx(np.mean(rmse))
    assert float(ours[0]["spread"]) == pytest.approx(se)
    assert r"\toprule" in tables["tex"]
    assert r"$-2.57 \pm 0.09$" in tables["tex"]


def test_write_report_from_saved_runs(tmp_path):
    paths = {}
    for name in ("yacht", "energy"):
        for method, offset in (("mp", 0.4), ("adamw", 0.6), ("ivon", 0.8)):
            run = fake_run(name, method, [0, 1], offset)
            json_path = tmp_path / name / method / "runs.json"
            save_run(run, json_path, tmp_path / name / method / "predictions.npz")
            paths.setdefault(name, {})[method] = json_path
    out = {
        key: tmp_path / "report" / f
        for key, f in (
            ("summary", "summary.json"),
            ("table_md", "table.md"),
            ("table_csv", "table.csv"),
            ("table_tex", "table.tex"),
            ("figure", "rmse_ll.png"),
        )
    }
    summary = write_report(paths, published=REGISTRY, **out)
    assert set(summary) == {"yacht", "energy"}
    assert out["figure"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out["figure"].stat().st_size > 10_000
    assert "### Coverage, CRPS, cost and chosen noise (ours)" in out["table_md"].read_text()
    assert "| Energy | IVON |" in out["table_md"].read_text()
    assert "Failed split" not in out["table_md"].read_text()


def test_a_split_far_above_the_median_is_named_as_failed(tmp_path):
    run = fake_run("wine", "ivon", [0, 1, 2, 3, 4], 0.5)
    median = 1.2
    rmse = [1.0, 1.1, FAILED_SPLIT_FACTOR * median * 1.01, FAILED_SPLIT_FACTOR * median * 0.99, 1.2]
    for record, value in zip(run.records, rmse, strict=True):  # split 3: bad, not failed
        record["metrics"]["rmse"] = value
    others = fake_run("wine", "mp", [0, 1, 2, 3, 4], 0.5)
    runs = {"wine": {"ivon": run.__dict__, "mp": others.__dict__}}
    failed = failed_splits(runs)
    assert [(f["set"], f["method"], f["split"]) for f in failed] == [("wine", "ivon", 2)]
    run.records[4]["trained_alone"] = True
    json_path = tmp_path / "runs.json"
    save_run(run, json_path, tmp_path / "predictions.npz")
    out = {k: tmp_path / k for k in ("summary", "table_md", "table_csv", "table_tex", "figure")}
    write_report({"wine": {"ivon": json_path}}, published=REGISTRY, **out)
    assert "**Failed split**: IVON on wine, split 2: RMSE" in out["table_md"].read_text()
    assert "**Retrained alone**: IVON on wine, splits [4]" in out["table_md"].read_text()
    assert json.loads(out["summary"].read_text())["failed_splits"][0]["split"] == 2
