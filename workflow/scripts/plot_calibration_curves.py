"""Per-epoch accuracy, NLL and calibration of every method, against epoch and wall-clock."""

from harness.eval_figures import plot_calibration_curves
from harness.eval_report import load_records
from harness.jobs import start_job

sm = snakemake  # noqa: F821 -- injected by Snakemake
log = start_job(sm.log[0], sm.threads)
title = f"{sm.wildcards.dataset} / {sm.wildcards.arch}"
plot_calibration_curves(load_records(sm.input.metrics), sm.output.figure, title=title)
log.info("wrote %s", sm.output.figure)
