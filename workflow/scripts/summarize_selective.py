"""Selective prediction of one (dataset, arch): table and accuracy-rejection curves."""

from amp.io import write_text
from harness.eval_figures import plot_selective
from harness.eval_report import SELECTIVE_COLUMNS, load_records
from harness.jobs import start_job
from harness.report import read_summary, render_table

sm = snakemake  # noqa: F821 -- injected by Snakemake
log = start_job(sm.log[0], sm.threads)
dataset, arch = sm.wildcards.dataset, sm.wildcards.arch
table = render_table(
    read_summary(sm.input.summary), dataset, arch, columns=SELECTIVE_COLUMNS, name="selective"
)
write_text(sm.output.md, table["md"])
write_text(sm.output.csv, table["csv"])
plot_selective(load_records(sm.input.metrics), sm.output.figure, title=f"{dataset} / {arch}")
log.info("wrote %s", list(sm.output))
