"""The batch message store's disk backend keeps only the batch in use in the process."""

import sys
from pathlib import Path

import pytest
import torch

from amp.gaussian import NatGaussian
from amp.store import MessageStore


def mapped_kib(path: Path) -> int:
    """Resident KiB of this process's mappings of ``path`` (``/proc/self/smaps``)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5:  # a mapping's header line
            inside = line.endswith(str(path))
        elif inside and fields[0] == "Rss:":
            total += int(fields[1])
    return total


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_disk_store_releases_every_batch_and_keeps_its_numbers(tmp_path, dtype):
    batches, shape = 40, (64, 256)  # 64 KiB (float32) per batch and array
    store = MessageStore(
        batches, shape, dtype=dtype, compute_dtype=torch.float64, directory=tmp_path
    )
    generator = torch.Generator().manual_seed(0)
    written = []
    for b in range(batches):
        message = NatGaussian(
            torch.randn(shape, generator=generator, dtype=torch.float64),
            torch.rand(shape, generator=generator, dtype=torch.float64),
        )
        store.set(b, message)
        written.append(message)
    tau_file = tmp_path / "store.tau.npy"
    per_batch_kib = 64 * 256 * torch.finfo(dtype).bits // 8 // 1024
    assert mapped_kib(tau_file) <= 2 * per_batch_kib  # not the whole file
    for b in (0, 17, batches - 1):
        got = store.get(b)
        assert mapped_kib(tau_file) <= 2 * per_batch_kib
        torch.testing.assert_close(got.tau, written[b].tau.to(dtype).double())
        torch.testing.assert_close(got.rho, written[b].rho.to(dtype).double())
    total = store.total()
    assert mapped_kib(tau_file) <= 2 * per_batch_kib
    expected = sum(m.tau.to(dtype).double() for m in written)
    torch.testing.assert_close(total.tau, expected)
