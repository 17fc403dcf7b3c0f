"""Choose the noise variance, train and score one method on the configured splits of a UCI set."""

from harness.jobs import start_job
from harness.uci.protocol import Protocol, method_settings
from harness.uci.runs import run_uci, save_run

sm = snakemake  # noqa: F821 -- injected by Snakemake
log = start_job(sm.log[0], sm.threads)
name, method = sm.wildcards.uci_set, sm.wildcards.uci_method
run = run_uci(
    name,
    method,
    method_settings(method, sm.params.settings),
    sm.params.splits,
    Protocol(**sm.params.protocol),
    root=sm.params.root,
)
save_run(run, sm.output.runs, sm.output.predictions)
for record in run.records:
    log.info("split %d: noise %g, %s", record["split"], record["noise_var"], record["metrics"])
