"""Symmetric padding of images, the reference's ``NNlib.pad_symmetric`` in plain torch.

The border is mirrored *including* the edge pixel, which is ``numpy.pad(mode="symmetric")``:
``[1, 2, 3]`` padded by 2 gives ``[2, 1, 1, 2, 3, 3, 2]``. PyTorch's ``"reflect"`` mode leaves
out the edge pixel (``[3, 2, 1, 2, 3, 2, 1]``) and is therefore a different padding. Every
padded pixel is a copy of an interior one, so padding is an index selection, and its transpose
(used by :mod:`amp.factors.conv2d` to send messages back) sums the copies onto their source.
Shared by the message-passing layers and the PyTorch baselines (:mod:`baselines.models`).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["symmetric_index", "symmetric_pad2d"]


def symmetric_index(size: int, padding: int, device: torch.device | None = None) -> Tensor:
    """Source index of every position of a symmetrically padded axis.

    Args:
        size: Length of the axis.
        padding: Positions added on each side, ``0 ≤ padding ≤ size``.
        device: Device of the index.

    Returns:
        ``(size + 2·padding,)`` int64 indices; ``[1, 2, 3]`` padded by 2 has
        ``[1, 0, 0, 1, 2, 2, 1]``.

    Raises:
        ValueError: If ``padding`` is negative or larger than the axis.
    """
    if padding < 0 or padding > size:
        raise ValueError(
            f"invalid padding: {padding!r} (symmetric padding needs 0 <= padding <= {size}, "
            f"the size of the axis)"
        )
    left = torch.arange(padding - 1, -1, -1, device=device)
    right = torch.arange(size - 1, size - 1 - padding, -1, device=device)
    return torch.cat([left, torch.arange(size, device=device), right])


def symmetric_pad2d(x: Tensor, padding: int) -> Tensor:
    """Pad the last two axes by mirroring the border, edge pixel included.

    Args:
        x: Images, ``(..., H, W)``.
        padding: Pixels added on every side, at most ``min(H, W)``.

    Returns:
        Padded images, ``(..., H + 2p, W + 2p)`` (``x`` itself when ``padding`` is 0).

    Raises:
        ValueError: If ``padding`` is negative or larger than the image.
    """
    height, width = x.shape[-2:]
    if padding < 0 or padding > min(height, width):
        raise ValueError(
            f"invalid padding: {padding!r} (symmetric padding must lie in "
            f"[0, {min(height, width)}] for images of size {height}x{width})"
        )
    if padding == 0:
        return x
    rows = symmetric_index(height, padding, x.device)
    cols = symmetric_index(width, padding, x.device)
    return x.index_select(-2, rows).index_select(-1, cols)
