"""One run of each method, trained, evaluated and saved the same way.

* :mod:`harness.runs.mp`: message passing (:func:`~harness.runs.mp.run_mp`).
* :mod:`harness.runs.baseline`: AdamW and IVON (:func:`~harness.runs.baseline.run_baseline`).
* :mod:`harness.runs.restore`: a trained run's model back from its checkpoint, to predict more
  inputs later (:func:`~harness.runs.restore.load_predictor`).
"""
