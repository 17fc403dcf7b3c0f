"""The reference's symmetric padding as a PyTorch module (the function is :mod:`amp.padding`)."""

from __future__ import annotations

import torch
from torch import nn

from amp.padding import symmetric_pad2d

__all__ = ["SymmetricPad2d"]


class SymmetricPad2d(nn.Module):
    """Module form of :func:`amp.padding.symmetric_pad2d` (no parameters).

    Mirrors the border including the edge pixel, as the reference's ``NNlib.pad_symmetric``;
    PyTorch's ``"reflect"`` padding leaves the edge pixel out and is a different padding.

    Args:
        padding: Pixels added on every side.
    """

    def __init__(self, padding: int) -> None:
        super().__init__()
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pad ``(N, C, H, W)`` to ``(N, C, H + 2p, W + 2p)``."""
        return symmetric_pad2d(x, self.padding)

    def extra_repr(self) -> str:
        """Shown in the module's printout."""
        return f"padding={self.padding}"
