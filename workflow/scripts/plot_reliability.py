"""Reliability diagrams of the first seed's predictions of every method."""

from harness.figures import plot_reliability
from harness.jobs import start_job
from harness.predictions import Predictions

sm = snakemake  # noqa: F821 -- injected by Snakemake
log = start_job(sm.log[0], sm.threads)
predictions = {}
for method, path in sm.input.items():
    loaded = Predictions.load(path)
    predictions[method] = (loaded.probs, loaded.labels)
title = f"{sm.wildcards.dataset} / {sm.wildcards.arch}"
plot_reliability(predictions, sm.output.figure, n_bins=sm.params.bins, title=title)
log.info("wrote %s", sm.output.figure)
