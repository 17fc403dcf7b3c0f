"""The benchmark harness around the method library :mod:`amp` and the :mod:`baselines`.

Everything that serves the benchmark rather than the method: data sets
(:mod:`harness.data`), metrics (:mod:`harness.metrics`), the predictions artefact
(:mod:`harness.predictions`), one run per method (:mod:`harness.runs`), the synthetic coverage
study (:mod:`harness.coverage`), reports, figures and the claims table (:mod:`harness.report`,
:mod:`harness.figures`, :mod:`harness.claims`), the CI metric gate (:mod:`harness.gate`), the
speed benchmark (:mod:`harness.bench`) and the helpers of the pipeline's scripts
(:mod:`harness.jobs`). It imports :mod:`amp` and :mod:`baselines`; neither imports it.
"""
