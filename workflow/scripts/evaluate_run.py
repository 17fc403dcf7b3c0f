"""Score one prediction artifact (and its extra sets): every metric, timings, as metrics.json."""

from amp.io import write_json
from harness.eval_sets import SetPredictions
from harness.jobs import start_job
from harness.predictions import Predictions
from harness.report import read_benchmark, run_record

sm = snakemake  # noqa: F821 -- injected by Snakemake
log = start_job(sm.log[0], sm.threads)
sets = getattr(sm.input, "sets", None)  # only when the configuration has extra sets
record = run_record(
    Predictions.load(sm.input.predictions),
    dataset=sm.wildcards.dataset,
    arch=sm.wildcards.arch,
    method=sm.wildcards.method,
    seed=int(sm.wildcards.seed),
    benchmark=read_benchmark(sm.input.benchmark),
    sets=None if sets is None else SetPredictions.load(sets),
    ood_name=sm.params.ood_name,
)
write_json(sm.output.metrics, record)
log.info("%s", record["metrics"])
