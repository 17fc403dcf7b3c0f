"""The UCI regression benchmark: MP, AdamW and IVON on the nine sets' standard splits.

- :mod:`harness.uci.protocol`: the network, the noise grid, each method's settings.
- :mod:`harness.uci.fit`: one method trained on several splits at once, predictions.
- :mod:`harness.uci.runs`: noise selection by validation, final training, scores per split.
- :mod:`harness.uci.scoring`: metrics in original units, mean ± standard error over splits.
- :mod:`harness.uci.published`: the published numbers (PBP, MC dropout, deep ensembles, TAGI).
- :mod:`harness.uci.report`: the table beside the published numbers, and its figure.

The data and splits come from :mod:`harness.data.uci`.
"""
