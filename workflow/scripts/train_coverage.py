"""Train the coverage study's networks of one method and variant; save their grid predictives."""

import time

from harness.coverage_report import save_predictions
from harness.jobs import start_job, train_coverage_method

sm = snakemake  # noqa: F821 -- injected by Snakemake
log = start_job(sm.log[0], sm.threads)
start = time.perf_counter()
study, methods = train_coverage_method(
    sm.wildcards.study_method, sm.wildcards.variant, sm.params.study
)
save_predictions(sm.output.predictions, study, methods)
log.info(
    "%s / %s: %s trained in %.1f s",
    sm.wildcards.variant,
    sm.wildcards.study_method,
    list(methods),
    time.perf_counter() - start,
)
