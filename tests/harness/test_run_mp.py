"""One MP run through ``run_mp``: a disk-backed message store changes only where it lives."""

import tempfile

import numpy as np
import pytest
import torch

from harness.data import make_sine
from harness.runs.mp import MPConfig, run_mp


@pytest.mark.parametrize("with_checkpoint", [False, True])
def test_store_on_disk_gives_the_same_predictions_and_leaves_no_scratch(
    tmp_path, monkeypatch, with_checkpoint
):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "scratch"))
    (tmp_path / "scratch").mkdir()
    data = make_sine(seed=1, dtype=torch.float64)
    config = MPConfig(epochs=2, batch_size=40)
    in_memory = run_mp(data, "toy_regression", config)
    checkpoint = tmp_path / "run" / "state.pt" if with_checkpoint else None
    if checkpoint is not None:
        checkpoint.parent.mkdir()
    on_disk = run_mp(
        data,
        "toy_regression",
        MPConfig(epochs=2, batch_size=40, store_on_disk=True),
        checkpoint=checkpoint,
    )
    np.testing.assert_allclose(on_disk.mean, in_memory.mean, rtol=1e-12)
    np.testing.assert_allclose(on_disk.var, in_memory.var, rtol=1e-12)
    assert list((tmp_path / "scratch").iterdir()) == []
    if with_checkpoint:
        assert any((tmp_path / "run" / "message_store").iterdir())


def test_flush_denormal_switch_keeps_predictions_and_restores_the_mode():
    from amp.runtime import denormals_flushed

    data = make_sine(seed=1, dtype=torch.float64)
    before = denormals_flushed()
    runs = [
        run_mp(data, "toy_regression", MPConfig(epochs=2, batch_size=40, flush_denormal=switch))
        for switch in (False, True)
    ]
    assert denormals_flushed() == before
    np.testing.assert_allclose(runs[1].mean, runs[0].mean, rtol=1e-10)
    np.testing.assert_allclose(runs[1].var, runs[0].var, rtol=1e-10)
