"""What every layer shares: the group of examples it processes and the layer interface.

Every layer implements the same small interface (the reference's implicit one made explicit):

* ``begin_batch(batch_size, num_groups)`` — reset the per-example state of a batch visit;
* ``forward(m_in, group)`` — forward messages of a :class:`Group` of examples of the batch;
* ``backward(m_back, group)`` — backward messages of the same examples; weight layers update
  their marginals here, so the next group of examples sees the update;
* ``predict(m_in)`` — forward-only pass on the prediction branch, using the marginals.

Several independent networks can be trained together: every tensor then starts with the
leading dimensions ``lead = (R,)`` (``()`` for a single network). Parameters are
``(*lead, ...)``; per-example state is ``(*lead, B, ...)`` with the examples on axis
``len(lead)``; data shared by all networks are ``(B, ...)`` and broadcast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from torch import Tensor

from amp.gaussian import NatGaussian

__all__ = ["Group", "Layer", "Message"]

Message = NatGaussian | Tensor
"""What flows between layers: Gaussian messages, or data (inputs, labels, probabilities)."""


@dataclass(frozen=True)
class Group:
    """A group of examples whose messages are computed together.

    Attributes:
        idx: Positions of the examples within the current batch, ``(G,)``.
        index: Number of the group within the batch visit (the same in every iteration).
    """

    idx: Tensor
    index: int


class Layer(Protocol):
    """Interface shared by all layers."""

    def begin_batch(self, batch_size: int, num_groups: int) -> None:
        """Reset the per-example state for a batch visit of ``batch_size`` examples."""

    def forward(self, m_in: Message, group: Group) -> Message:
        """Forward messages of the examples of ``group``, ``(*lead, G, ...)``."""

    def backward(self, m_back: Message, group: Group) -> NatGaussian | None:
        """Backward messages of the same examples (``None`` where no input message exists)."""

    def predict(self, m_in: Message) -> Message:
        """Forward-only prediction with the current marginals, ``(*lead, N, ...)``."""
