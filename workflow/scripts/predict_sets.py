"""Predict one run's extra evaluation sets (shifted test images, more OOD sets) from its model."""

from harness.jobs import predict_eval_sets, start_job

sm = snakemake  # noqa: F821 -- injected by Snakemake
log = start_job(sm.log[0], sm.threads)
predictions = predict_eval_sets(
    sm.wildcards.method,
    sm.input.model,
    sm.wildcards.dataset,
    sm.wildcards.arch,
    experiment=sm.params.experiment,
    data=sm.params.data,
    evaluation=sm.params.evaluation,
    run=sm.params.run,
    data_settings=sm.params.data_settings,
)
predictions.save(sm.output.sets)
log.info(
    "%d sets in %.1f s; skipped: %s",
    len(predictions.probs),
    predictions.metadata["predict_seconds"],
    predictions.metadata["skipped"],
)
