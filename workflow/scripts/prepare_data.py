"""Check that a data set (and its OOD set) loads, and summarise it as each method sees it."""

from amp.io import write_json
from harness.jobs import describe_inputs, start_job

log = start_job(snakemake.log[0], snakemake.threads)  # noqa: F821 -- injected by Snakemake
summary = describe_inputs(
    snakemake.wildcards.dataset,  # noqa: F821
    snakemake.params.experiment,  # noqa: F821
    snakemake.params.data,  # noqa: F821
    snakemake.params.methods,  # noqa: F821
)
write_json(snakemake.output.summary, summary)  # noqa: F821
log.info("wrote %s", snakemake.output.summary)  # noqa: F821
