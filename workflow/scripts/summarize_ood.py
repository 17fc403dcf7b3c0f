"""Out-of-distribution detection on every OOD set of one (dataset, arch): the table."""

from amp.io import write_text
from harness.eval_report import evaluation_notes, load_records, render_ood_table
from harness.jobs import start_job

sm = snakemake  # noqa: F821 -- injected by Snakemake
log = start_job(sm.log[0], sm.threads)
dataset, arch = sm.wildcards.dataset, sm.wildcards.arch
records = load_records(sm.input.metrics)
table = render_ood_table(records, dataset, arch, evaluation_notes(sm.params.evaluation))
write_text(sm.output.md, table["md"])
write_text(sm.output.csv, table["csv"])
log.info("wrote %s", list(sm.output))
