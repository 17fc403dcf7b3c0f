"""Train an AdamW or IVON network for one (dataset, arch, seed) and save its predictions."""

from harness.jobs import finish_state, load_inputs, resumable_state, start_job
from harness.runs.baseline import BaselineConfig, run_baseline

sm = snakemake  # noqa: F821 -- injected by Snakemake
log = start_job(sm.log[0], sm.threads)
data, x_ood = load_inputs(
    sm.wildcards.dataset, sm.params.experiment, sm.params.data, **sm.params.data_settings
)
log.info("data: %r; OOD inputs: %s", data, None if x_ood is None else tuple(x_ood.shape))
checkpoint = resumable_state(sm.params.state, sm.params.identity)
result = run_baseline(
    data,
    sm.wildcards.arch,
    sm.params.method,
    BaselineConfig(**sm.params.run),
    ood_inputs=x_ood,
    checkpoint=checkpoint,
    metadata={"seed": int(sm.wildcards.seed), "data": sm.params.data_settings},
)
# The prediction at the mean weights goes beside the predictions (for AdamW they are one).
artifacts = result if isinstance(result, dict) else {"adamw": result}
outputs = {sm.params.method: [sm.output.predictions], "ivon_mean": [sm.output.predictions_mean]}
if sm.params.method == "adamw":
    outputs["adamw"].append(sm.output.predictions_mean)
for name, predictions in artifacts.items():
    for path in outputs[name]:
        predictions.save(path)
    log.info("%s: %s", name, predictions.metrics())
finish_state(checkpoint, sm.output.model)
