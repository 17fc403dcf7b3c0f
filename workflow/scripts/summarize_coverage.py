"""Score the coverage study (bootstrap intervals), write its table, figures and summary."""

from harness.coverage_report import write_report
from harness.jobs import start_job

sm = snakemake  # noqa: F821 -- injected by Snakemake
log = start_job(sm.log[0], sm.threads)
summary = write_report(
    {variant: list(sm.input[variant]) for variant in sm.params.variants},
    summary=sm.output.summary,
    table_md=sm.output.table_md,
    table_csv=sm.output.table_csv,
    figures=dict(zip(sm.params.variants, sm.output.figures, strict=True)),
    samples=sm.params.bootstrap,
    seed=sm.params.seed,
)
log.info("correlation (MP, initialisation variant): %s", summary.get("correlation"))
