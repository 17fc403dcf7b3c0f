"""Generated OOD sets: what each one is, deterministic noise, shapes and value ranges."""

from __future__ import annotations

import pytest
import torch
from test_shift import images

from harness import ood_sets


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", ood_sets.SYNTHETIC_OOD)
def test_shapes_ranges_and_determinism(dtype, name):
    x = images(n=20, channels=3, height=32, width=32, dtype=dtype)
    a = ood_sets.synthetic_ood(name, x, seed=1)
    assert a.shape == x.shape
    assert a.dtype == dtype
    assert float(a.min()) >= 0.0
    assert float(a.max()) <= 1.0
    assert torch.equal(a, ood_sets.synthetic_ood(name, x, seed=1))
    assert not torch.equal(a, x)
    changes_with_seed = not torch.equal(a, ood_sets.synthetic_ood(name, x, seed=2))
    assert changes_with_seed == name.endswith("_noise")


def test_flipped_and_inverted():
    x = images(n=3)
    up = ood_sets.synthetic_ood("flipped", x)
    assert torch.equal(up[:, :, 0], x[:, :, -1])
    assert torch.equal(up[:, :, -1], x[:, :, 0])
    assert torch.equal(ood_sets.synthetic_ood("flipped", up), x)
    assert torch.equal(ood_sets.synthetic_ood("inverted", x), 1 - x)


def test_noise_images_follow_their_distributions():
    x = images(n=400, channels=2) * 0.8
    uniform = ood_sets.synthetic_ood("uniform_noise", x)
    assert float(uniform.mean()) == pytest.approx(0.5, abs=0.01)
    assert float(uniform.var()) == pytest.approx(1 / 12, rel=0.02)
    normal = ood_sets.synthetic_ood("gaussian_noise", x)
    for c in range(2):  # per channel: the clean images' mean; clipping at 0 raises it a little
        mean = float(x[:, c].mean())
        assert float(normal[:, c].mean()) == pytest.approx(mean, abs=0.05)
        assert float(normal[:, c].mean()) >= mean - 1e-3


def test_errors():
    with pytest.raises(ValueError, match="unknown generated OOD set 'svhn'"):
        ood_sets.synthetic_ood("svhn", images())
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ood_sets.synthetic_ood("flipped", images() * 300)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        ood_sets.synthetic_ood("flipped", images()[0])
