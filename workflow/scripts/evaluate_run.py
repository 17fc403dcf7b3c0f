"""Score one prediction artifact: every metric plus timings, written as metrics.json."""

from amp.io import write_json
from harness.jobs import start_job
from harness.predictions import Predictions
from harness.report import read_benchmark, run_record

sm = snakemake  # noqa: F821 -- injected by Snakemake
log = start_job(sm.log[0], sm.threads)
record = run_record(
    Predictions.load(sm.input.predictions),
    dataset=sm.wildcards.dataset,
    arch=sm.wildcards.arch,
    method=sm.wildcards.method,
    seed=int(sm.wildcards.seed),
    benchmark=read_benchmark(sm.input.benchmark),
)
write_json(sm.output.metrics, record)
log.info("%s", record["metrics"])
