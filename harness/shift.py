"""Dataset shift built offline: test images rotated or corrupted at graded intensities.

Every generator takes images ``(N, C, H, W)`` with values in ``[0, 1]`` (before normalisation)
and returns a new tensor of the same shape, dtype and device with values in ``[0, 1]``; at
intensity 0 (angle 0, severity 0) it returns an exact copy. Random corruptions draw from an
explicit ``torch.Generator``, so :func:`shift_images` is deterministic for a seed.

- :func:`rotate`: rotation about the image centre by an angle in degrees (counter-clockwise as
  displayed), bilinear interpolation, zero (black) fill outside the original image; the
  "rotated MNIST" view of uncertainty-baselines and torch-uncertainty.
- :func:`gaussian_noise`, :func:`gaussian_blur`, :func:`contrast`: three corruptions of
  CIFAR-10-C at severities 1-5, with its constants (Hendrycks and Dietterich 2019, "Benchmarking
  Neural Network Robustness to Common Corruptions and Perturbations", ``make_cifar_c.py`` of
  ``hendrycks/robustness``), which were made for 32×32 images and suit 28×28 ones.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "CONTRAST_FACTOR",
    "CORRUPTIONS",
    "GAUSSIAN_BLUR_SIGMA",
    "GAUSSIAN_NOISE_STD",
    "SEVERITIES",
    "SHIFT_KINDS",
    "contrast",
    "gaussian_blur",
    "gaussian_noise",
    "rotate",
    "shift_images",
]

GAUSSIAN_NOISE_STD: tuple[float, ...] = (0.04, 0.06, 0.08, 0.09, 0.10)
"""Standard deviation of the additive pixel noise at severities 1-5 (CIFAR-10-C)."""

GAUSSIAN_BLUR_SIGMA: tuple[float, ...] = (0.4, 0.6, 0.7, 0.8, 1.0)
"""Standard deviation (pixels) of the Gaussian blur at severities 1-5 (CIFAR-10-C)."""

CONTRAST_FACTOR: tuple[float, ...] = (0.75, 0.5, 0.4, 0.3, 0.15)
"""Factor on the deviation from each image's mean at severities 1-5 (CIFAR-10-C)."""

BLUR_TRUNCATE: float = 4.0
"""Blur kernel radius in standard deviations, ``round(4 sigma)`` pixels: scipy's and
scikit-image's default, which CIFAR-10-C's ``skimage.filters.gaussian`` used."""

SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
"""Severities of the corruptions (0 is the clean image)."""

CORRUPTIONS: tuple[str, ...] = ("gaussian_noise", "gaussian_blur", "contrast")
"""Corruption names accepted by :func:`shift_images`."""

SHIFT_KINDS: tuple[str, ...] = ("rotation", *CORRUPTIONS)
"""Every shift of :func:`shift_images`; ``rotation`` takes degrees, the others severities."""


def _check_images(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"images must be a float tensor (N, C, H, W), got {shape}")
    if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        raise ValueError(
            f"images must lie in [0, 1] (pixels before normalisation), got "
            f"[{float(x.min()):.3g}, {float(x.max()):.3g}]; undo the normalisation first"
        )


def _check_severity(severity: int) -> int:
    if isinstance(severity, bool) or not isinstance(severity, int) or not 0 <= severity <= 5:
        raise ValueError(f"invalid severity: {severity!r} (an integer from 0 to 5)")
    return severity


def rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate images about their centre, counter-clockwise as displayed (row 0 at the top).

    Each output pixel samples the input bilinearly at the rotated position of its centre
    (``align_corners=False``); positions outside the image read 0. Aspect ratios are kept for
    non-square images. Multiples of 90° map pixel centres onto pixel centres of square images,
    so they equal :func:`torch.rot90` up to rounding.

    Args:
        x: Images ``(N, C, H, W)`` in ``[0, 1]``.
        degrees: Angle in degrees; 0 returns a copy.

    Returns:
        Rotated images, same shape and dtype, in ``[0, 1]``.
    """
    _check_images(x)
    if not math.isfinite(degrees):
        raise ValueError(f"invalid angle: {degrees!r} degrees")
    if degrees == 0 or x.numel() == 0:
        return x.clone()
    height, width = x.shape[-2:]
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    # affine_grid maps output to input coordinates in [-1, 1] (x right, y down). An image turned
    # counter-clockwise as displayed reads, at output (u, v), the input at R(-angle) (u, v)
    # in pixel units; the H/W factors convert between the two normalised axes.
    theta = torch.tensor(
        [[cos, -sin * height / width, 0.0], [sin * width / height, cos, 0.0]],
        dtype=x.dtype,
        device=x.device,
    )
    grid = F.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.clamp_(0.0, 1.0)


def gaussian_noise(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Add independent Gaussian noise to every pixel and clip to ``[0, 1]``.

    Args:
        x: Images ``(N, C, H, W)`` in ``[0, 1]``.
        severity: 0-5; the standard deviation is :data:`GAUSSIAN_NOISE_STD` ``[severity - 1]``.
        generator: Source of the noise (on the CPU; the noise is moved to ``x``'s device).

    Returns:
        Noisy images, same shape and dtype, in ``[0, 1]``.
    """
    _check_images(x)
    if _check_severity(severity) == 0:
        return x.clone()
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return (x + GAUSSIAN_NOISE_STD[severity - 1] * noise).clamp_(0.0, 1.0)


def gaussian_blur(x: torch.Tensor, severity: int) -> torch.Tensor:
    """Blur every channel with a Gaussian kernel; borders repeat the edge pixels.

    The kernel is separable with radius ``round(BLUR_TRUNCATE * sigma)``, like
    ``scipy.ndimage.gaussian_filter(mode="nearest")`` on the two image axes.

    Args:
        x: Images ``(N, C, H, W)`` in ``[0, 1]``.
        severity: 0-5; ``sigma`` is :data:`GAUSSIAN_BLUR_SIGMA` ``[severity - 1]`` pixels.

    Returns:
        Blurred images, same shape and dtype, in ``[0, 1]``.
    """
    _check_images(x)
    if _check_severity(severity) == 0 or x.numel() == 0:
        return x.clone()
    sigma = GAUSSIAN_BLUR_SIGMA[severity - 1]
    radius = int(BLUR_TRUNCATE * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(dtype=x.dtype, device=x.device)
    channels = x.shape[1]
    rows = kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    cols = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    out = F.pad(x, (0, 0, radius, radius), mode="replicate")
    out = F.conv2d(out, rows, groups=channels)
    out = F.pad(out, (radius, radius, 0, 0), mode="replicate")
    out = F.conv2d(out, cols, groups=channels)
    return out.clamp_(0.0, 1.0)


def contrast(x: torch.Tensor, severity: int) -> torch.Tensor:
    """Shrink each image's deviations from its mean (per channel) by a factor; clip to ``[0, 1]``.

    Args:
        x: Images ``(N, C, H, W)`` in ``[0, 1]``.
        severity: 0-5; the factor is :data:`CONTRAST_FACTOR` ``[severity - 1]``.

    Returns:
        Images of lower contrast, same shape and dtype, in ``[0, 1]``.
    """
    _check_images(x)
    if _check_severity(severity) == 0:
        return x.clone()
    mean = x.mean(dim=(-2, -1), keepdim=True)
    return ((x - mean) * CONTRAST_FACTOR[severity - 1] + mean).clamp_(0.0, 1.0)


def shift_images(x: torch.Tensor, kind: str, intensity: float, *, seed: int = 0) -> torch.Tensor:
    """Apply one shift of :data:`SHIFT_KINDS` at one intensity, deterministically for a seed.

    Args:
        x: Images ``(N, C, H, W)`` in ``[0, 1]``.
        kind: ``"rotation"`` (``intensity`` in degrees) or a corruption of :data:`CORRUPTIONS`
            (``intensity`` a severity 0-5).
        intensity: Angle or severity; 0 returns a copy.
        seed: Seed of the random corruptions; each (kind, severity) draws from its own stream
            ``torch.Generator().manual_seed(seed * 1000 + 10 * kind index + severity)``.

    Returns:
        Shifted images, same shape and dtype, in ``[0, 1]``.

    Raises:
        ValueError: On an unknown kind, a severity that is not an integer 0-5, or images that
            are not ``(N, C, H, W)`` in ``[0, 1]``.
    """
    if kind not in SHIFT_KINDS:
        raise ValueError(f"unknown shift {kind!r}; use one of {', '.join(SHIFT_KINDS)}")
    if kind == "rotation":
        return rotate(x, float(intensity))
    if float(intensity) != int(intensity):
        raise ValueError(f"invalid severity: {intensity!r} (an integer from 0 to 5)")
    severity = int(intensity)
    if kind == "gaussian_noise":
        stream = seed * 1000 + 10 * SHIFT_KINDS.index(kind) + severity
        return gaussian_noise(x, severity, torch.Generator().manual_seed(stream))
    if kind == "gaussian_blur":
        return gaussian_blur(x, severity)
    return contrast(x, severity)
