"""Write the comparison table of one (dataset, arch) as Markdown, CSV and LaTeX."""

from amp.io import write_text
from harness.jobs import start_job
from harness.report import protocol_notes, read_summary, render_table

sm = snakemake  # noqa: F821 -- injected by Snakemake
log = start_job(sm.log[0], sm.threads)
dataset, arch = sm.wildcards.dataset, sm.wildcards.arch
tables = render_table(
    read_summary(sm.input.summary), dataset, arch, protocol_notes(sm.params.config, dataset, arch)
)
for kind in ("md", "csv", "tex"):
    write_text(sm.output[kind], tables[kind])
log.info("wrote %s", list(sm.output))
