"""Per-epoch accuracy, NLL and calibration of every method, against epoch and wall-clock."""

from amp.io import write_text
from harness.eval_figures import plot_calibration_curves
from harness.eval_report import load_records, render_epoch_table
from harness.jobs import start_job

sm = snakemake  # noqa: F821 -- injected by Snakemake
log = start_job(sm.log[0], sm.threads)
records = load_records(sm.input.metrics)
title = f"{sm.wildcards.dataset} / {sm.wildcards.arch}"
plot_calibration_curves(records, sm.output.figure, title=title)
table = render_epoch_table(records, sm.wildcards.dataset, sm.wildcards.arch)
write_text(sm.output.md, table["md"])
write_text(sm.output.csv, table["csv"])
log.info("wrote %s, %s", sm.output.figure, sm.output.md)
