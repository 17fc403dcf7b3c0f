"""The batch message store: one stored message per data batch for one parameter tensor.

The store is what prevents double counting: every example's contribution to a weight lives in
exactly one batch message, which is divided out (the batch's *cavity*) before the batch is
processed again. It holds ``num_batches × parameters × 2`` numbers, which for large networks does
not fit in memory; two backends share one interface:

* ``"memory"`` — two tensors ``(num_batches, *shape)``;
* ``"disk"`` — two memory-mapped files. The pages of a batch are released from the process
  as soon as the batch has been read or written, so the process holds only the batch in use;
  the operating system's page cache keeps recently used pages as long as RAM is free.

Either can store float32 to halve the size (messages are converted on the way in and out).
"""

from __future__ import annotations

import mmap
import shutil
from pathlib import Path

import numpy as np
import torch

from amp.gaussian import NatGaussian

__all__ = ["MessageStore"]

_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}
_SUM_CHUNK = 64
"""Batches summed at a time by :meth:`MessageStore.total` (bounds the memory of the sum)."""


class MessageStore:
    """Stored batch messages ``(num_batches, *shape)`` in natural parameters.

    Args:
        num_batches: Number of data batches.
        shape: Shape of the parameter tensor.
        dtype: Storage dtype (float32 or float64).
        compute_dtype: Dtype of the messages handed out.
        device: Device of the messages handed out (the store itself lives on the CPU for
            ``"disk"`` and on ``device`` for ``"memory"``).
        directory: Where the ``"disk"`` backend puts its files; ``None`` keeps the store in memory.
        name: File-name stem for the ``"disk"`` backend.
    """

    def __init__(
        self,
        num_batches: int,
        shape: tuple[int, ...],
        *,
        dtype: torch.dtype = torch.float64,
        compute_dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
        directory: str | Path | None = None,
        name: str = "store",
    ) -> None:
        if dtype not in _NUMPY_DTYPES:
            raise ValueError(f"invalid store dtype: {dtype} (use torch.float32 or torch.float64)")
        self.num_batches, self.shape = num_batches, tuple(shape)
        self.dtype, self.compute_dtype = dtype, compute_dtype
        self.device = torch.device(device)
        self.directory = None if directory is None else Path(directory)
        full = (num_batches, *self.shape)
        self._files: tuple[Path, Path] | None = None
        self._maps: tuple[np.memmap, ...] = ()
        if self.directory is None:
            self._tau = torch.zeros(full, dtype=dtype, device=self.device)
            self._rho = torch.zeros(full, dtype=dtype, device=self.device)
        else:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._files = (self.directory / f"{name}.tau.npy", self.directory / f"{name}.rho.npy")
            self._maps = tuple(
                np.lib.format.open_memmap(f, mode="w+", dtype=_NUMPY_DTYPES[dtype], shape=full)
                for f in self._files
            )
            self._tau, self._rho = (torch.from_numpy(m) for m in self._maps)

    @property
    def backend(self) -> str:
        """``"memory"`` or ``"disk"``."""
        return "memory" if self.directory is None else "disk"

    @property
    def nbytes(self) -> int:
        """Size of the stored numbers in bytes."""
        return 2 * self._tau.numel() * self._tau.element_size()

    def get(self, batch: int) -> NatGaussian:
        """The stored message of one batch, in the compute dtype and device."""
        # a disk-backed message is copied out of the mapping, whose pages are released
        kw = {"dtype": self.compute_dtype, "device": self.device, "copy": bool(self._maps)}
        message = NatGaussian(self._tau[batch].to(**kw), self._rho[batch].to(**kw))
        self._release(batch, batch + 1)
        return message

    def set(self, batch: int, message: NatGaussian) -> None:
        """Replace the stored message of one batch."""
        self._tau[batch].copy_(message.tau)
        self._rho[batch].copy_(message.rho)
        self._release(batch, batch + 1)

    def _release(self, start: int, stop: int) -> None:
        """Unmap the pages of batches ``start:stop`` from the process (disk backend).

        The file mappings are shared, so written numbers stay in the page cache and reach the
        file; the next access maps them again. Without this every batch visited in an epoch
        would stay mapped, and the process would hold the whole store.
        """
        if not self._maps or not hasattr(mmap, "MADV_DONTNEED"):
            return
        for array in self._maps:
            per_batch = array[0].nbytes
            base = array.offset % mmap.ALLOCATIONGRANULARITY  # where the data start in the map
            begin = base + start * per_batch
            begin -= begin % mmap.PAGESIZE
            end = min(base + stop * per_batch, len(array._mmap))
            array._mmap.madvise(mmap.MADV_DONTNEED, begin, end - begin)

    def total(self) -> NatGaussian:
        """Product of all stored messages (sum of natural parameters), in the compute dtype."""
        kw = {"dtype": self.compute_dtype, "device": self.device}
        tau = torch.zeros(self.shape, **kw)
        rho = torch.zeros(self.shape, **kw)
        for start in range(0, self.num_batches, _SUM_CHUNK):
            stop = min(start + _SUM_CHUNK, self.num_batches)
            tau += self._tau[start:stop].to(**kw).sum(0)
            rho += self._rho[start:stop].to(**kw).sum(0)
            self._release(start, stop)
        return NatGaussian(tau, rho)

    def flush(self) -> None:
        """Write memory-mapped pages to disk (no-op in memory)."""
        for array in self._maps:
            array.flush()

    # --------------------------------------------------------------------------- checkpoints
    def state(self, snapshot_dir: Path | None = None) -> dict:
        """Serialisable state. The disk backend copies its files into ``snapshot_dir``.

        Args:
            snapshot_dir: A directory that belongs to this checkpoint alone (disk backend).
        """
        if self._files is None:
            return {"tau": self._tau.cpu(), "rho": self._rho.cpu()}
        if snapshot_dir is None:
            raise ValueError("a disk-backed store needs a snapshot directory to be checkpointed")
        self.flush()
        snapshot_dir.mkdir(parents=True, exist_ok=True)
        for source in self._files:
            shutil.copyfile(source, snapshot_dir / source.name)
        return {"snapshot": str(snapshot_dir), "files": [f.name for f in self._files]}

    def load_state(self, state: dict) -> None:
        """Restore the numbers saved by :meth:`state`."""
        if "tau" in state:
            self._tau.copy_(state["tau"])
            self._rho.copy_(state["rho"])
            return
        snapshot = Path(state["snapshot"])
        for target, name in zip((self._tau, self._rho), state["files"], strict=True):
            path = snapshot / name
            try:
                saved = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as err:
                raise ValueError(f"stored batch messages {path} are missing or corrupt") from err
            if saved.shape != tuple(target.shape):
                raise ValueError(f"stored batch messages {path} have the wrong shape")
            target.copy_(torch.from_numpy(np.array(saved)))
