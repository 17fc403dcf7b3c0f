"""Aggregate the UCI runs over splits; write the tables beside the published ones and a figure."""

from harness.jobs import start_job
from harness.uci.report import write_report

sm = snakemake  # noqa: F821 -- injected by Snakemake
log = start_job(sm.log[0], sm.threads)
runs = {
    name: {method: sm.input[f"runs_{name}_{method}"] for method in sm.params.methods}
    for name in sm.params.sets
}
write_report(
    runs,
    published=sm.input.published,
    summary=sm.output.summary,
    table_md=sm.output.table_md,
    table_csv=sm.output.table_csv,
    table_tex=sm.output.table_tex,
    figure=sm.output.figure,
)
log.info("UCI tables written for %s", ", ".join(sm.params.sets))
