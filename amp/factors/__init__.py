"""Pure message functions, one module per factor, named by the edge the message goes to.

No function here keeps state or draws random numbers: the stateful bookkeeping (marginals,
per-example messages, caches) lives in :mod:`amp.layers`. Every function takes a leading
dimension of examples ``G`` so that a group of examples is processed at once; the sequential
schedule passes groups of one. A factor's fast paths live apart from its reference messages
(:mod:`amp.factors.linear_series` next to :mod:`amp.factors.linear`).
"""

from amp.factors import (
    argmax,
    conv2d,
    leaky_relu,
    linear,
    linear_series,
    maxpool,
    product_sum,
    regression,
)

__all__ = [
    "argmax",
    "conv2d",
    "leaky_relu",
    "linear",
    "linear_series",
    "maxpool",
    "product_sum",
    "regression",
]
