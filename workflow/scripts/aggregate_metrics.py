"""Collect every run's metrics.json; write all runs, their mean ± SE over seeds, per epoch too."""

from harness.eval_report import aggregate_epochs, epoch_frame, load_records
from harness.jobs import start_job
from harness.report import aggregate, load_runs, write_summary

sm = snakemake  # noqa: F821 -- injected by Snakemake
log = start_job(sm.log[0], sm.threads)
runs = load_runs(sm.input.metrics)
summary = aggregate(runs)
epochs = aggregate_epochs(epoch_frame(load_records(sm.input.metrics)))
write_summary(runs, summary, sm.output.summary, sm.output.csv, epochs=epochs)
log.info("%d runs, %d aggregated rows", len(runs), len(summary))
