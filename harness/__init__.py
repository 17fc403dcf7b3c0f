"""The benchmark harness around the method library :mod:`amp` and the :mod:`baselines`.

Everything that serves the benchmark rather than the method: data sets
(:mod:`harness.data`), metrics (:mod:`harness.metrics`), the predictions artefact
(:mod:`harness.predictions`), one run per method (:mod:`harness.runs`), shifted test sets and
OOD sets that need no download with their predictions and scores (:mod:`harness.shift`,
:mod:`harness.ood_sets`, :mod:`harness.eval_sets`), the synthetic coverage study
(:mod:`harness.coverage`), reports, figures and the claims table (:mod:`harness.report`,
:mod:`harness.eval_report`, :mod:`harness.figures`, :mod:`harness.eval_figures`,
:mod:`harness.claims`), the CI metric gate (:mod:`harness.gate`), the
speed benchmark (:mod:`harness.bench`) and the helpers of the pipeline's scripts
(:mod:`harness.jobs`). It imports :mod:`amp` and :mod:`baselines`; neither imports it.
"""
