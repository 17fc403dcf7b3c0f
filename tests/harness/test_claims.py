from pathlib import Path

import pandas as pd
import pytest
import yaml

from harness import claims

REPO = Path(__file__).resolve().parents[2]


def summary_rows(dataset="cifar10", arch="conv890k", **by_method):
    rows = []
    for method, values in by_method.items():
        row = {"dataset": dataset, "arch": arch, "method": method, "n_seeds": 1}
        row.update({f"{k}_mean": v for k, v in values.items()})
        rows.append(row)
    return rows


def c1_summary(mp_ece, mp_acc=0.80, dataset="cifar10", arch="conv890k"):
    return pd.DataFrame(
        summary_rows(
            dataset,
            arch,
            mp={"accuracy": mp_acc, "ece_mv": mp_ece, "seconds_per_epoch": 500.0},
            adamw={"accuracy": 0.81, "ece_mv": 0.041, "seconds_per_epoch": 4.0},
            ivon={"accuracy": 0.80, "ece_mv": 0.046, "seconds_per_epoch": 5.0},
        )
    )


C1_TEST = {"kind": "calibration", "dataset": "cifar10", "arch": "conv890k", "accuracy_margin": 0.02}


@pytest.mark.parametrize(
    ("mp_ece", "mp_acc", "verdict"),
    [
        (0.029, 0.80, claims.REPRODUCED),
        (0.050, 0.80, claims.NOT_REPRODUCED),  # worse calibrated than a baseline
        (0.029, 0.75, claims.NOT_REPRODUCED),  # not competitive in accuracy
    ],
)
def test_calibration_claim(mp_ece, mp_acc, verdict):
    finding = claims.EVALUATORS["calibration"](c1_summary(mp_ece, mp_acc), C1_TEST, {})
    assert finding.verdict == verdict
    assert finding.where == ("cifar10", "conv890k")
    assert "ECE-paper 0.0290" in finding.ours or mp_ece != 0.029


def test_calibration_claim_on_other_data_is_a_proxy_only():
    summary = c1_summary(0.029, dataset="fashion_mnist", arch="mlp")
    finding = claims.EVALUATORS["calibration"](summary, {**C1_TEST, "reason": "no CIFAR"}, {})
    assert finding.verdict == claims.NOT_TESTABLE
    assert finding.ours.startswith("proxy fashion_mnist/mlp")
    assert finding.reason.startswith("no CIFAR")


def test_speed_claim_ratio():
    test = {"kind": "speed", "ratio_range": [30, 300]}
    finding = claims.EVALUATORS["speed"](c1_summary(0.03), test, {})
    assert finding.verdict == claims.REPRODUCED
    assert "100× slower" in finding.ours
    assert "vs AdamW 4 s/epoch: 125× slower" in finding.ours
    no_adamw = c1_summary(0.03)
    no_adamw = no_adamw[no_adamw["method"] != "adamw"]
    assert "AdamW" not in claims.EVALUATORS["speed"](no_adamw, test, {}).ours
    fast = c1_summary(0.03)
    fast.loc[fast["method"] == "mp", "seconds_per_epoch_mean"] = 50.0
    assert claims.EVALUATORS["speed"](fast, test, {}).verdict == claims.NOT_REPRODUCED
    no_ivon = fast[fast["method"] != "ivon"]
    assert claims.EVALUATORS["speed"](no_ivon, test, {}).verdict == claims.NOT_TESTABLE


def test_overconfidence_claim():
    summary = pd.DataFrame(
        summary_rows("a", "b", mp={"overconfidence": 0.01})
        + summary_rows("c", "d", mp={"overconfidence": 0.05})
    )
    test = {"kind": "overconfidence", "max_overconfidence": 0.02}
    finding = claims.EVALUATORS["overconfidence"](summary, test, {})
    assert finding.verdict == claims.NOT_REPRODUCED
    assert "a/b" in finding.ours
    assert "c/d" in finding.ours
    ok = claims.EVALUATORS["overconfidence"](summary.iloc[:1], test, {})
    assert ok.verdict == claims.REPRODUCED


def test_coverage_claim_reads_evidence():
    test = {"kind": "coverage", "min_correlation": 0.8, "reason": "not run"}
    absent = claims.EVALUATORS["coverage"](pd.DataFrame(), test, {})
    assert absent.verdict == claims.NOT_TESTABLE
    assert absent.reason == "not run"
    study = {"correlation": 0.9, "median_coverage": {"x<-10": [0.61, 0.86, 0.93]}}
    found = claims.EVALUATORS["coverage"](pd.DataFrame(), test, {"coverage": study})
    assert found.verdict == claims.REPRODUCED
    assert "61%/86%/93%" in found.ours
    low = claims.EVALUATORS["coverage"](pd.DataFrame(), test, {"coverage": {"correlation": 0.5}})
    assert low.verdict == claims.NOT_REPRODUCED


def test_coverage_claim_needs_the_medians_too_when_the_paper_gives_them():
    test = {
        "kind": "coverage",
        "min_correlation": 0.8,
        "paper_medians": {"x<-10": [0.61, 0.86, 0.93], "x>10": [0.36, 0.68, 0.90]},
        "median_tolerance": 0.1,
    }
    evaluate = claims.EVALUATORS["coverage"]
    close = {"x<-10": [0.55, 0.80, 0.95], "x>10": [0.30, 0.70, 0.85]}
    found = evaluate(
        pd.DataFrame(), test, {"coverage": {"correlation": 0.9, "median_coverage": close}}
    )
    assert found.verdict == claims.REPRODUCED
    assert "largest shortfall 6%" in found.reason
    under = {"x<-10": [0.21, 0.63, 0.87], "x>10": [0.30, 0.49, 0.68]}
    found = evaluate(
        pd.DataFrame(), test, {"coverage": {"correlation": 0.9, "median_coverage": under}}
    )
    assert found.verdict == claims.NOT_REPRODUCED
    assert "correlation ≥ 0.8: True" in found.reason
    assert "largest shortfall 40%" in found.reason


def test_protocol_differences():
    paper = {"epochs": 25, "dataset": "cifar10", "device": "cuda"}
    ours = {"epochs": 3, "dataset": "cifar10"}
    assert claims.protocol_differences(paper, ours) == [
        "epochs: 25 → 3",
        "device: cuda → not run",
    ]


def test_registry_renders_with_every_claim():
    registry = yaml.safe_load((REPO / "configs" / "claims.yaml").read_text())
    ids = [claim["id"] for claim in registry["claims"]]
    assert ids == ["C1", "C2", "C3", "C4", "C5"]
    for claim in registry["claims"]:
        assert {"claim", "paper_value", "source", "protocol", "test"} <= set(claim)
        assert claim["test"]["kind"] in claims.EVALUATORS
    config = {
        "training": {"epochs": 3},
        "experiments": {"fashion_mnist": {"archs": ["mlp"], "seeds": [0], "methods": ["mp"]}},
    }
    summary = c1_summary(0.03, dataset="fashion_mnist", arch="mlp")
    summary["overconfidence_mean"] = 0.0
    rows = claims.evaluate_claims(registry, summary, claims.run_settings(config))
    text = claims.render_claims(rows, claims.claims_header({"report": {"title": "default"}}))
    table = [line for line in text.splitlines() if line.startswith("| C") and ":" in line[:6]]
    assert len(table) == 5
    assert "not testable here" in table[0]
    assert "epochs: 25 → 3" in table[0]
    assert "default configuration" in text


def test_unknown_test_kind():
    registry = {"claims": [{"id": "X", "test": {"kind": "magic"}}]}
    with pytest.raises(ValueError, match="unknown test kind 'magic'"):
        claims.evaluate_claims(registry, pd.DataFrame(), {})


def epochs_frame(dataset, arch, method, metric, values):
    return pd.DataFrame(
        [
            {"dataset": dataset, "arch": arch, "method": method, "epoch": e, f"{metric}_mean": v}
            for e, v in enumerate(values, start=1)
        ]
    )


def test_calibration_verdicts_state_the_epoch_and_the_trend():
    summary = c1_summary(0.029)
    epochs = pd.concat(
        [
            epochs_frame("cifar10", "conv890k", "mp", "ece_mv", [0.08, 0.05, 0.029]),
            epochs_frame("cifar10", "conv890k", "adamw", "ece_mv", [0.03, 0.02, 0.041]),
        ]
    )
    finding = claims.EVALUATORS["calibration"](summary, C1_TEST, {"epochs": epochs})
    assert finding.ours.startswith("after epoch 3 (the last): ")
    assert "mp epochs 1–3: 0.0800, 0.0500, 0.0290 (falling)" in finding.ours
    assert "adamw epochs 1–3: 0.0300, 0.0200, 0.0410 (not monotone, lowest at epoch 2)" in (
        finding.ours
    )
    summary = pd.DataFrame(summary_rows("a", "b", mp={"overconfidence": 0.04}))
    epochs = epochs_frame("a", "b", "mp", "overconfidence", [0.14, 0.11, 0.07, 0.04])
    test = {"kind": "overconfidence", "max_overconfidence": 0.02}
    finding = claims.EVALUATORS["overconfidence"](summary, test, {"epochs": epochs})
    assert finding.ours == (
        "a/b: confidence − accuracy +0.040 after epoch 4 (the last); "
        "epochs 1–4: +0.140, +0.110, +0.070, +0.040 (falling)"
    )
    assert "at the last epoch" in finding.reason
    no_epochs = claims.EVALUATORS["overconfidence"](summary, test, {})
    assert no_epochs.ours == "a/b: confidence − accuracy +0.040 after the last epoch"


C5 = {
    "id": "C5",
    "claim": "not overconfident",
    "paper_value": "–",
    "source": "–",
    "protocol": {"epochs": 25, "mp_schedule": "sequential"},
    "test": {"kind": "overconfidence", "max_overconfidence": 0.02, "reference": ["mp_schedule"]},
}


def c5_config(schedule):
    return {
        "training": {"epochs": 10},
        "methods": {"mp": {"schedule": schedule, "dtype": "float32"}},
        "experiments": {
            "fashion_mnist": {"archs": ["mlp"], "seeds": [0], "methods": ["mp"], "subset": 5000}
        },
    }


@pytest.mark.parametrize(
    ("gap", "criterion"), [(0.10, claims.NOT_REPRODUCED), (0.01, "reproduced")]
)
def test_uncertainty_verdicts_off_the_reference_schedule_are_proxies(gap, criterion):
    summary = pd.DataFrame(summary_rows("fashion_mnist", "mlp", mp={"overconfidence": gap}))
    registry = {"claims": [C5]}
    [scaled] = claims.evaluate_claims(registry, summary, claims.run_settings(c5_config("scaled")))
    assert scaled["verdict"] == claims.PROXY
    assert scaled["reason"].startswith(
        f"read at mp_schedule scaled (paper: sequential); criterion there ({criterion}): "
    )
    assert scaled["read_at"] == "MP scaled, float32; 10 epochs; 5000 training examples; 1 seed"
    assert "epochs: 25 → 10" in scaled["differences"]
    [reference] = claims.evaluate_claims(
        registry, summary, claims.run_settings(c5_config("sequential"))
    )
    assert reference["verdict"] == criterion
    assert reference["read_at"].startswith("MP sequential, float32; 10 epochs")
    assert "| MP scaled, float32; 10 epochs;" in claims.render_claims([scaled])


def test_the_coverage_verdict_is_read_at_the_studys_own_settings():
    registry = yaml.safe_load((REPO / "configs" / "claims.yaml").read_text())
    [c2] = [claim for claim in registry["claims"] if claim["id"] == "C2"]
    config = {
        "training": {"epochs": 2},
        "experiments": {"fashion_mnist": {"archs": ["mlp"], "seeds": [0], "methods": ["mp"]}},
        "coverage": {
            "networks": 30,
            "iterations": 500,
            "schedule": "sequential",
            "dtype": "float64",
        },
    }
    study = {"correlation": 0.95, "median_coverage": c2["test"]["paper_medians"]}
    evidence = {"coverage": study}
    [row] = claims.evaluate_claims(
        {"claims": [c2]}, pd.DataFrame(), claims.run_settings(config), evidence
    )
    assert row["verdict"] == claims.REPRODUCED
    assert row["read_at"] == "MP sequential, float64; 30 networks × 500 sweeps"
    assert row["differences"] == ["networks: 100 → 30"]
    config["coverage"]["schedule"] = "scaled"
    [row] = claims.evaluate_claims(
        {"claims": [c2]}, pd.DataFrame(), claims.run_settings(config), evidence
    )
    assert row["verdict"] == claims.PROXY
    assert "mp_schedule scaled (paper: sequential)" in row["reason"]
