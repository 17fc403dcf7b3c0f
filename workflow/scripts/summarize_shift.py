"""Accuracy, NLL and calibration under dataset shift of one (dataset, arch): table and figure."""

from amp.io import write_text
from harness.eval_figures import plot_shift
from harness.eval_report import evaluation_notes, load_records, render_shift_table
from harness.jobs import start_job

sm = snakemake  # noqa: F821 -- injected by Snakemake
log = start_job(sm.log[0], sm.threads)
dataset, arch = sm.wildcards.dataset, sm.wildcards.arch
records = load_records(sm.input.metrics)
table = render_shift_table(records, dataset, arch, evaluation_notes(sm.params.evaluation))
write_text(sm.output.md, table["md"])
write_text(sm.output.csv, table["csv"])
plot_shift(records, sm.output.figure, title=f"{dataset} / {arch}")
log.info("wrote %s", list(sm.output))
