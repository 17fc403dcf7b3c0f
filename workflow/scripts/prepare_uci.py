"""Check a UCI set's files and splits; write their sizes and target statistics."""

from amp.io import write_json
from harness.data.uci import describe_uci
from harness.jobs import start_job

sm = snakemake  # noqa: F821 -- injected by Snakemake
log = start_job(sm.log[0], sm.threads)
summary = describe_uci(sm.wildcards.uci_set, sm.params.splits, sm.params.root)
write_json(sm.output.summary, summary)
log.info(
    "%s: %s, %d splits checked", sm.wildcards.uci_set, summary["source"], len(summary["splits"])
)
