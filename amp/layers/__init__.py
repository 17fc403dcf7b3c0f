"""Stateful layers: the bookkeeping around the pure message functions of :mod:`amp.factors`.

Every layer implements the interface :class:`Layer` (``begin_batch``, ``forward``, ``backward``,
``predict``) on a :class:`Group` of examples; see :mod:`amp.layers.base`. One module per kind:

* :mod:`amp.layers.weight` — :class:`WeightLayer` (Linear, Conv2d): marginals of weights and
  biases, cavities and the reference update; other within-batch schedules hand it a combiner
  (:mod:`amp.schedules`);
* :mod:`amp.layers.activations` — :class:`LeakyReLULayer`, :class:`MaxPoolLayer`,
  :class:`FlattenLayer`;
* :mod:`amp.layers.outputs` — :class:`ArgmaxLayer`, :class:`RegressionLayer`.

Reference: the layer types of ``lib/factor_graph.jl``.
"""

from amp.layers.activations import FlattenLayer, LeakyReLULayer, MaxPoolLayer
from amp.layers.base import Group, Layer, Message
from amp.layers.outputs import ArgmaxLayer, RegressionLayer
from amp.layers.weight import WeightLayer

__all__ = [
    "ArgmaxLayer",
    "FlattenLayer",
    "Group",
    "Layer",
    "LeakyReLULayer",
    "MaxPoolLayer",
    "Message",
    "RegressionLayer",
    "WeightLayer",
]
