"""Writers of every kind of result file, and a child process that dies in the middle of one.

    python reliability_writers.py KIND DEST FRACTION

calls :func:`writer` ``KIND`` for ``DEST`` and ends the process with ``os._exit`` (status
:data:`DIED`) once it has written ``FRACTION`` of the file's bytes, as a kill in the middle of
the write would. ``trainer_disk`` dies instead while copying the message store's snapshot.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from reliability_harness import run_child

WRITERS = Path(__file__).resolve()
DIED = 137
"""Exit status of a child that died in the middle of a write (as after SIGKILL)."""


class _DyingFile:
    """A file that ends the process once ``limit`` bytes have been written to it."""

    def __init__(self, handle, limit: int) -> None:
        self._handle, self._limit, self._written = handle, limit, 0

    def write(self, data):
        room = self._limit - self._written
        if len(data) >= room:
            self._handle.write(data[:room])
            self._handle.flush()
            os._exit(DIED)
        self._written += len(data)
        return self._handle.write(data)

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._handle.__exit__(*exc)


def writer(kind: str):
    """``write(path)`` for each kind of result file the pipeline writes."""
    import numpy as np
    import pandas as pd
    import torch

    from amp import io, specs
    from amp.network import Network
    from amp.trainer import Trainer
    from harness import report
    from harness.data import make_sine
    from harness.predictions import Predictions

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(10), size=2000)
    predictions = Predictions(
        probs=probs, labels=rng.integers(0, 10, 2000), metadata={"method": "mp"}
    )
    records = [
        report.run_record(predictions, dataset="d", arch="a", method=method, seed=seed)
        for method in report.METHOD_LABELS
        for seed in range(3)
    ]
    keys = ("dataset", "arch", "method", "seed")
    runs = pd.DataFrame([{**r["metrics"], **{k: r[k] for k in keys}} for r in records])

    def trainer_save(path):
        data = make_sine(seed=1)
        net = Network(specs.arch("toy_regression"), (1,), seed=0)
        trainer = Trainer(net, 50).fit(data.x_train, data.y_train, epochs=1)
        trainer.save(path)

    def trainer_disk_save(path):
        data = make_sine(seed=1)
        net = Network(specs.arch("toy_regression"), (1,), seed=0)
        store = Path(path).parent / f"store-{os.getpid()}"
        trainer = Trainer(net, 50, store_dir=store).fit(data.x_train, data.y_train, epochs=1)
        trainer.save(path)

    def table(path):
        tables = report.render_table(report.aggregate(runs), "d", "a")
        io.write_text(path, tables["md"])

    def summary(path):
        report.write_summary(runs, report.aggregate(runs), path, Path(path).with_suffix(".csv"))

    return {
        "checkpoint": lambda path: io.save_checkpoint(path, {"x": torch.randn(200_000)}),
        "trainer": trainer_save,
        "trainer_disk": trainer_disk_save,
        "predictions": predictions.save,
        "metrics": lambda path: io.write_json(path, records[0]),
        "table": table,
        "summary": summary,
    }[kind]


def _die_writing_main(kind: str, dest: str, fraction: str) -> None:
    dest = Path(dest)
    write = writer(kind)
    scratch = dest.parent / ".measure" / dest.name
    write(scratch)
    limit = max(1, int(scratch.stat().st_size * float(fraction)))
    shutil.rmtree(scratch.parent)
    if kind == "trainer_disk":  # die while copying the message store's snapshot

        def dying_copy(source, target, **_):
            data = Path(source).read_bytes()
            Path(target).write_bytes(data[: int(len(data) * float(fraction))])
            os._exit(DIED)

        shutil.copyfile = dying_copy
    else:
        real_fdopen = os.fdopen
        os.fdopen = lambda fd, mode="r", *a, **k: _DyingFile(real_fdopen(fd, mode, *a, **k), limit)
    write(dest)
    sys.exit(0)  # not reached: the write ends the process


def die_writing(kind: str, dest: Path, fraction: float):
    """Run :func:`writer` ``kind`` in a child process that dies after ``fraction`` of the file."""
    return run_child(kind, str(dest), str(fraction), script=WRITERS)


if __name__ == "__main__":
    _die_writing_main(*sys.argv[1:4])
