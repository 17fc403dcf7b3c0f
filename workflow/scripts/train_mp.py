"""Train a message-passing network for one (dataset, arch, seed) and save its predictions."""

from harness.jobs import finish_state, load_inputs, resumable_state, start_job
from harness.runs.mp import MPConfig, run_mp

sm = snakemake  # noqa: F821 -- injected by Snakemake
log = start_job(sm.log[0], sm.threads)
data, x_ood = load_inputs(
    sm.wildcards.dataset, sm.params.experiment, sm.params.data, **sm.params.data_settings
)
log.info("data: %r; OOD inputs: %s", data, None if x_ood is None else tuple(x_ood.shape))
config = MPConfig(**sm.params.run)
checkpoint = resumable_state(sm.params.state, sm.params.identity)
predictions = run_mp(
    data,
    sm.wildcards.arch,
    config,
    ood_inputs=x_ood,
    checkpoint=checkpoint,
    metadata={"seed": int(sm.wildcards.seed), "data": sm.params.data_settings},
)
for entry in predictions.metadata["history"]:
    log.info("epoch %s: %s", entry["epoch"], entry)
predictions.save(sm.output.predictions)
finish_state(checkpoint, sm.output.model)
log.info("trained in %.1f s", predictions.metadata["train_seconds"])
