"""Set the paper's claims (configs/claims.yaml) against the aggregated results."""

import json
from pathlib import Path

import yaml

from amp.io import write_text
from harness.claims import claims_header, evaluate_claims, render_claims, run_settings
from harness.eval_report import read_epochs
from harness.jobs import start_job
from harness.report import read_summary

sm = snakemake  # noqa: F821 -- injected by Snakemake
log = start_job(sm.log[0], sm.threads)
registry = yaml.safe_load(Path(sm.input.registry).read_text())
evidence = {
    name: json.loads(Path(path).read_text())
    for name, path in zip(sm.params.evidence_names, sm.input.evidence, strict=True)
}
summary = read_summary(sm.input.summary)
evidence["epochs"] = read_epochs(sm.input.summary)  # per-epoch scores: epoch read and trend
settings = run_settings(sm.params.config)
rows = evaluate_claims(registry, summary, settings, evidence)
write_text(sm.output.claims, render_claims(rows, claims_header(sm.params.config)))
log.info("%s", [(row["id"], row["verdict"]) for row in rows])
