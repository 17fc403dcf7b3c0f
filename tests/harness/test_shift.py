"""Shift generators: deterministic, identity at intensity 0, shapes and ranges kept, references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from harness import shift

DTYPES = [torch.float64, torch.float32]


def images(n=6, channels=1, height=28, width=28, dtype=torch.float64, seed=0):
    """Smooth random images in [0, 1]: a blurred blob on a dark background, like digits."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, channels, height, width, dtype=dtype)
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    for i in range(n):
        cy, cx = torch.randint(8, height - 8, (2,), generator=g)
        blob = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 18.0).to(dtype)
        x[i] = blob * (0.5 + 0.5 * torch.rand(channels, 1, 1, generator=g, dtype=dtype))
    return x


CASES = [("rotation", a) for a in (0, 15, 90, 180)] + [
    (kind, s) for kind in shift.CORRUPTIONS for s in (0, 1, 3, 5)
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("kind", "intensity"), CASES)
def test_shape_dtype_range_and_determinism(dtype, kind, intensity):
    x = images(dtype=dtype, channels=3, height=32, width=32)
    a = shift.shift_images(x, kind, intensity, seed=4)
    b = shift.shift_images(x, kind, intensity, seed=4)
    assert a.shape == x.shape
    assert a.dtype == dtype
    assert float(a.min()) >= 0.0
    assert float(a.max()) <= 1.0
    assert torch.equal(a, b)
    if intensity == 0:
        assert torch.equal(a, x)
        assert a is not x
    else:
        assert not torch.equal(a, x)
    if kind == "gaussian_noise" and intensity:
        assert not torch.equal(a, shift.shift_images(x, kind, intensity, seed=5))


def test_inputs_are_not_modified():
    x = images()
    before = x.clone()
    for kind, intensity in CASES:
        shift.shift_images(x, kind, intensity)
    assert torch.equal(x, before)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 2, 3])
def test_quarter_turns_equal_rot90(dtype, k):
    x = images(dtype=dtype, channels=2)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    np.testing.assert_allclose(
        shift.rotate(x, 90.0 * k), torch.rot90(x, k, dims=(-2, -1)), atol=tol
    )


def test_rotation_is_counter_clockwise_as_displayed():
    x = torch.zeros(1, 1, 9, 9, dtype=torch.float64)
    x[0, 0, 4, 6] = 1.0  # right of the centre
    turned = shift.rotate(x, 90.0)
    assert turned[0, 0, 2, 4] == pytest.approx(1.0)  # above the centre (row 0 is the top)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("degrees", [15.0, 45.0, 120.0])
def test_rotated_back_matches_within_interpolation_error(dtype, degrees):
    x = images(dtype=dtype)
    back = shift.rotate(shift.rotate(x, degrees), -degrees)
    # inside the inscribed disc nothing was cut off; two bilinear resamplings of these smooth
    # images blur them a little
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    inside = ((yy - 13.5) ** 2 + (xx - 13.5) ** 2) < 12.0**2
    error = (back - x)[..., inside].abs()
    assert float(error.max()) < 0.06
    assert float(error.mean()) < 0.01
    assert float((shift.rotate(x, degrees) - x)[..., inside].abs().max()) > 0.2  # it did turn


def test_rotation_keeps_aspect_ratio_of_non_square_images():
    x = torch.zeros(1, 1, 10, 20, dtype=torch.float64)
    x[0, 0, 4:6, 14:16] = 1.0  # 5.5 pixels right of the centre (9.5, 4.5)
    turned = shift.rotate(x, 90.0)
    # now 5.5 pixels above the centre: rows -1..0 (partly outside), columns 9-10
    assert float(turned[0, 0, 0, 9:11].sum()) > 0.4
    assert float(turned[0, 0, 4:6, 14:16].sum()) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_blur_matches_scipy(dtype, severity):
    x = images(dtype=dtype, channels=3, height=32, width=30)
    sigma = shift.GAUSSIAN_BLUR_SIGMA[severity - 1]
    expected = ndimage.gaussian_filter(
        x.double().numpy(), sigma=(0, 0, sigma, sigma), mode="nearest", truncate=4.0
    )
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    np.testing.assert_allclose(shift.gaussian_blur(x, severity), expected, atol=tol)


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_contrast_matches_a_direct_computation(severity):
    x = images(channels=3, n=4)
    c = shift.CONTRAST_FACTOR[severity - 1]
    arr = x.numpy()
    mean = arr.mean(axis=(2, 3), keepdims=True)
    expected = np.clip((arr - mean) * c + mean, 0, 1)
    np.testing.assert_allclose(shift.contrast(x, severity), expected, atol=1e-14)
    assert float(shift.contrast(x, severity).std()) < float(x.std())


@pytest.mark.parametrize("severity", [1, 5])
def test_gaussian_noise_has_the_named_deviation(severity):
    x = torch.full((200, 1, 28, 28), 0.5, dtype=torch.float64)  # far from the clipping bounds
    out = shift.gaussian_noise(x, severity, torch.Generator().manual_seed(0))
    std = shift.GAUSSIAN_NOISE_STD[severity - 1]
    assert float((out - x).std()) == pytest.approx(std, rel=0.01)
    assert float((out - x).mean()) == pytest.approx(0.0, abs=0.003)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda x: shift.shift_images(x, "fog", 1), "unknown shift 'fog'"),
        (lambda x: shift.shift_images(x, "contrast", 6), "invalid severity: 6"),
        (lambda x: shift.shift_images(x, "contrast", 1.5), "invalid severity: 1.5"),
        (lambda x: shift.rotate(x, float("nan")), "invalid angle"),
        (lambda x: shift.rotate(x * 255, 10.0), r"must lie in \[0, 1\]"),
        (lambda x: shift.contrast(x[0], 1), r"\(N, C, H, W\)"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call(images(n=2))
