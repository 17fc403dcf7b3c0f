"""Out-of-distribution image sets that need no download, made from the test images or from noise.

Every generator returns images ``(M, C, H, W)`` in ``[0, 1]`` (before normalisation), like the
in-distribution test images they are set against:

- ``flipped``: the test images upside down (rows reversed). For clothing and digits that is no
  longer an object of the training distribution, while the pixel statistics stay exactly the
  same, which makes it a hard, near-distribution set.
- ``inverted``: ``1 - x``, dark objects on a bright background.
- ``uniform_noise``: every pixel uniform on ``[0, 1]``.
- ``gaussian_noise``: every pixel normal with the test images' mean and standard deviation (per
  channel), clipped to ``[0, 1]``.

The random sets draw from an explicit ``torch.Generator`` (:func:`synthetic_ood`).
"""

from __future__ import annotations

import torch

__all__ = [
    "SYNTHETIC_OOD",
    "flipped",
    "gaussian_noise_images",
    "inverted",
    "synthetic_ood",
    "uniform_noise_images",
]

SYNTHETIC_OOD: tuple[str, ...] = ("flipped", "inverted", "uniform_noise", "gaussian_noise")
"""Names of the generated OOD sets of :func:`synthetic_ood`."""


def flipped(x: torch.Tensor) -> torch.Tensor:
    """The images upside down: ``out[..., i, :] = x[..., H - 1 - i, :]``.

    Args:
        x: Images ``(N, C, H, W)``.

    Returns:
        Flipped copies, same shape and dtype.
    """
    return torch.flip(x, dims=(-2,))


def inverted(x: torch.Tensor) -> torch.Tensor:
    """Photographic negatives ``1 - x`` of images in ``[0, 1]``.

    Args:
        x: Images ``(N, C, H, W)`` in ``[0, 1]``.

    Returns:
        Inverted copies, same shape and dtype.
    """
    return 1.0 - x


def uniform_noise_images(
    n: int, shape: tuple[int, ...], generator: torch.Generator, dtype: torch.dtype
) -> torch.Tensor:
    """Images of independent pixels uniform on ``[0, 1)``.

    Args:
        n: Number of images.
        shape: Shape of one image ``(C, H, W)``.
        generator: Source of the noise.
        dtype: Floating dtype.

    Returns:
        Images ``(n, *shape)``.
    """
    return torch.rand((n, *shape), generator=generator, dtype=dtype)


def gaussian_noise_images(
    n: int,
    mean: torch.Tensor,
    std: torch.Tensor,
    shape: tuple[int, ...],
    generator: torch.Generator,
) -> torch.Tensor:
    """Images of independent normal pixels with a mean and deviation per channel, clipped.

    Args:
        n: Number of images.
        mean: Pixel mean per channel ``(C,)``.
        std: Pixel standard deviation per channel ``(C,)``.
        shape: Shape of one image ``(C, H, W)``.
        generator: Source of the noise.

    Returns:
        Images ``(n, *shape)`` in ``[0, 1]``, dtype of ``mean``.
    """
    view = (1, -1, 1, 1)
    noise = torch.randn((n, *shape), generator=generator, dtype=mean.dtype)
    return (mean.view(view) + std.view(view) * noise).clamp_(0.0, 1.0)


def synthetic_ood(name: str, x: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """One generated OOD set of :data:`SYNTHETIC_OOD`, as many images as ``x`` has.

    Args:
        name: ``"flipped"``, ``"inverted"``, ``"uniform_noise"`` or ``"gaussian_noise"``.
        x: In-distribution test images ``(N, C, H, W)`` in ``[0, 1]``: the source of the first
            two sets, and of shape, size and pixel statistics for the noise sets.
        seed: Seed of the noise sets (``uniform_noise`` and ``gaussian_noise`` draw from the
            streams ``seed * 1000 + 1`` and ``+ 2``).

    Returns:
        Images ``(N, C, H, W)`` in ``[0, 1]``, dtype of ``x``.

    Raises:
        ValueError: On an unknown name or images that are not ``(N, C, H, W)`` in ``[0, 1]``.
    """
    if name not in SYNTHETIC_OOD:
        raise ValueError(f"unknown generated OOD set {name!r}; use one of {SYNTHETIC_OOD}")
    if x.dim() != 4 or not x.is_floating_point() or len(x) == 0:
        raise ValueError(f"images must be a non-empty float tensor (N, C, H, W), got {x.shape}")
    if float(x.min()) < 0.0 or float(x.max()) > 1.0:
        raise ValueError("images must lie in [0, 1] (pixels before normalisation)")
    if name == "flipped":
        return flipped(x)
    if name == "inverted":
        return inverted(x)
    generator = torch.Generator().manual_seed(seed * 1000 + SYNTHETIC_OOD.index(name) - 1)
    if name == "uniform_noise":
        return uniform_noise_images(len(x), tuple(x.shape[1:]), generator, x.dtype)
    per_channel = x.transpose(0, 1).reshape(x.shape[1], -1)
    return gaussian_noise_images(
        len(x), per_channel.mean(dim=1), per_channel.std(dim=1), tuple(x.shape[1:]), generator
    )
