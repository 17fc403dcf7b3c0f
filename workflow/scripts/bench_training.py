"""Time every method on the named architectures and write reports/bench_<device>.md/.csv."""

from harness import bench
from harness.jobs import start_job

sm = snakemake  # noqa: F821 -- injected by Snakemake
start_job(sm.log[0], sm.threads)
bench.main(
    [
        "--archs",
        *sm.params.archs,
        "--device",
        sm.params.device,
        "--threads",
        str(sm.threads),
        "--repeats",
        str(sm.params.repeats),
        "--out",
        sm.params.out,
    ]
)
