"""Learning curves (test scores against training wall-clock) and seconds per epoch."""

import json
from pathlib import Path

from harness.figures import plot_epoch_seconds, plot_learning_curves
from harness.jobs import start_job

sm = snakemake  # noqa: F821 -- injected by Snakemake
log = start_job(sm.log[0], sm.threads)
records = [json.loads(Path(path).read_text()) for path in sm.input.metrics]
title = f"{sm.wildcards.dataset} / {sm.wildcards.arch}"
plot_learning_curves(records, sm.output.curves, title=title)
plot_epoch_seconds(records, sm.output.epoch_seconds, title=title)
log.info("wrote %s", list(sm.output))
