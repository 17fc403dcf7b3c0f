"""Atomic result files: a writer that dies midway leaves the old file; damage is detected.

A child process (``reliability_writers.py``) ends itself with ``os._exit`` after
writing part of a file, as SIGKILL would; in-process writers that raise midway must clean up.
Damaged checkpoints (truncated, a flipped byte, empty, foreign) are refused with
:class:`amp.io.CorruptFileError` naming the path, by the trainer, the baselines and the
pipeline's resumable state.
"""

import json
import logging
import os
import zipfile

import pytest
import torch
from reliability_harness import run_script, script_job
from reliability_writers import DIED, die_writing, writer

from amp import io, specs
from amp.io import CorruptFileError
from amp.network import Network
from amp.trainer import Trainer
from harness.data import make_sine
from harness.jobs import resumable_state
from harness.predictions import Predictions
from harness.runs.baseline import BaselineConfig, run_baseline
from harness.runs.mp import MPConfig, run_mp


def load_json(path):
    return json.loads(path.read_text())


LOADERS = {
    "checkpoint": io.load_checkpoint,
    "trainer": Trainer.load,
    "predictions": Predictions.load,
    "metrics": load_json,
    "table": lambda path: path.read_text(),
    "summary": load_json,
}
SUFFIXES = {"checkpoint": ".pt", "trainer": ".pt", "predictions": ".npz", "table": ".md"}
REFUSED = {  # what the loader of each kind raises on a truncated copy
    "checkpoint": CorruptFileError,
    "trainer": CorruptFileError,
    "predictions": CorruptFileError,
    "metrics": ValueError,
    "summary": ValueError,
}


def temporaries(directory):
    return sorted(p for p in directory.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("kind", list(LOADERS))
def test_process_dying_mid_write_leaves_the_old_file(kind, tmp_path):
    dest = tmp_path / f"out{SUFFIXES.get(kind, '.json')}"
    writer(kind)(dest)  # the previous, valid version
    old = dest.read_bytes()
    before = sorted(tmp_path.iterdir())
    child = die_writing(kind, dest, 0.5)
    assert child.returncode == DIED, child.stdout + child.stderr
    assert dest.read_bytes() == old
    LOADERS[kind](dest)  # still loads
    (partial,) = temporaries(tmp_path)  # the half-written temporary, under a hidden name
    assert partial.name.startswith(f".{dest.name}.")
    assert 0 < partial.stat().st_size < len(old)
    assert sorted(set(tmp_path.iterdir()) - {partial}) == before
    if kind in REFUSED:
        copy = tmp_path / f"copy{dest.suffix}"
        copy.write_bytes(partial.read_bytes())
        with pytest.raises(REFUSED[kind]):
            LOADERS[kind](copy)


def test_process_dying_while_snapshotting_a_disk_store_keeps_the_old_checkpoint(tmp_path):
    """Saving the same epoch again must not overwrite the snapshot the old checkpoint uses."""
    dest = tmp_path / "ck.pt"
    writer("trainer_disk")(dest)
    old = dest.read_bytes()
    x = torch.linspace(-2, 2, 41, dtype=torch.float64)[:, None]
    expected = Trainer.load(dest, store_dir=tmp_path / "restore1")
    child = die_writing("trainer_disk", dest, 0.5)
    assert child.returncode == DIED, child.stdout + child.stderr
    assert dest.read_bytes() == old
    restored = Trainer.load(dest, store_dir=tmp_path / "restore2")
    for a, b in zip(restored.stores, expected.stores, strict=True):
        for store_a, store_b in zip(a, b, strict=True):
            assert torch.equal(store_a.total().tau, store_b.total().tau)
            assert torch.equal(store_a.total().rho, store_b.total().rho)
    restored.net.predict(x)


def test_process_dying_mid_first_write_leaves_no_file(tmp_path):
    dest = tmp_path / "model.pt"
    child = die_writing("trainer", dest, 0.9)
    assert child.returncode == DIED, child.stdout + child.stderr
    assert not dest.exists()


class DiskFull(OSError):
    pass


@pytest.mark.parametrize("kind", list(LOADERS))
def test_writer_failing_midway_keeps_the_old_file_and_cleans_up(kind, tmp_path, monkeypatch):
    dest = tmp_path / f"out{SUFFIXES.get(kind, '.json')}"
    write = writer(kind)
    write(dest)
    old = dest.read_bytes()
    real_fdopen = os.fdopen

    class Failing:
        def __init__(self, handle):
            self.handle, self.written = handle, 0

        def write(self, data):
            self.written += len(data)
            if self.written > len(old) // 2:
                raise DiskFull("no space left on device")
            return self.handle.write(data)

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.handle.__exit__(*exc)

    monkeypatch.setattr(os, "fdopen", lambda *a, **k: Failing(real_fdopen(*a, **k)))
    with pytest.raises((DiskFull, RuntimeError)):  # torch.save reports it as a RuntimeError
        write(dest)
    monkeypatch.undo()
    assert dest.read_bytes() == old
    assert temporaries(tmp_path) == []


# ------------------------------------------------------------------------- damaged files
def trainer_checkpoint(path):
    data = make_sine(seed=1)
    net = Network(specs.arch("toy_regression"), (1,), seed=0)
    Trainer(net, 50).fit(data.x_train, data.y_train, epochs=1, checkpoint=path)
    return path.read_bytes()


def largest_record(raw_path):
    """Offset and size of the data of the largest record in a torch zip archive."""
    with zipfile.ZipFile(raw_path) as archive:
        info = max(archive.infolist(), key=lambda i: i.file_size)
    with open(raw_path, "rb") as handle:
        handle.seek(info.header_offset + 26)
        name_len, extra_len = (int.from_bytes(handle.read(2), "little") for _ in range(2))
    return info.header_offset + 30 + name_len + extra_len, info.file_size


def damaged(raw, how, path):
    if how == "empty":
        return b""
    if how == "garbage":
        return b"not a checkpoint\n" * 100
    if how == "flipped byte":
        start, size = largest_record(path)
        out = bytearray(raw)
        out[start + size // 2] ^= 0x01  # one bit inside a tensor: torch.load alone misses it
        return bytes(out)
    return raw[: int(len(raw) * float(how.split()[1]))]


@pytest.mark.parametrize(
    "how", ["empty", "garbage", "truncated 0.1", "truncated 0.5", "truncated 0.999", "flipped byte"]
)
def test_damaged_trainer_checkpoint_is_refused_naming_the_path(how, tmp_path):
    path = tmp_path / "ck.pt"
    path.write_bytes(damaged(trainer_checkpoint(path), how, path))
    with pytest.raises(CorruptFileError, match=f"checkpoint {path} is corrupt"):
        Trainer.load(path)


def tensors(value):
    """Every tensor inside nested dicts, lists and tuples, in order."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            yield from tensors(value[key])
    elif isinstance(value, list | tuple):
        for item in value:
            yield from tensors(item)


def test_flipped_byte_would_load_silently_without_the_checksum_test(tmp_path):
    """Why load_checkpoint verifies the zip CRCs: torch.load itself returns altered numbers."""
    path = tmp_path / "ck.pt"
    raw = trainer_checkpoint(path)
    path.write_bytes(damaged(raw, "flipped byte", path))
    state = torch.load(path, weights_only=False)  # no error
    (tmp_path / "good.pt").write_bytes(raw)
    good = torch.load(tmp_path / "good.pt", weights_only=False)
    pairs = zip(tensors(state), tensors(good), strict=True)
    assert any(not torch.equal(a, b) for a, b in pairs)


def test_foreign_file_is_not_taken_for_a_trainer_checkpoint(tmp_path):
    path = tmp_path / "ck.pt"
    io.save_checkpoint(path, {"model": {}})
    with pytest.raises(CorruptFileError, match=rf"checkpoint {path} lacks \['version'"):
        Trainer.load(path)


def test_run_mp_and_run_baseline_refuse_a_truncated_checkpoint(tmp_path):
    data = make_sine(seed=1, dtype=torch.float32)
    ck = tmp_path / "mp.pt"
    run_mp(data, "toy_regression", MPConfig(epochs=1, batch_size=40), checkpoint=ck)
    ck.write_bytes(ck.read_bytes()[:-100])
    with pytest.raises(CorruptFileError, match=f"checkpoint {ck} is corrupt or truncated"):
        run_mp(data, "toy_regression", MPConfig(epochs=2, batch_size=40), checkpoint=ck)
    ck = tmp_path / "adamw.pt"
    config = BaselineConfig(epochs=1, batch_size=40)
    run_baseline(data, "toy_regression", "adamw", config, checkpoint=ck)
    ck.write_bytes(ck.read_bytes()[:-100])
    with pytest.raises(CorruptFileError, match=f"checkpoint {ck} is corrupt or truncated"):
        run_baseline(data, "toy_regression", "adamw", config, checkpoint=ck)


def test_corrupt_scores_file_of_a_baseline_run_is_refused(tmp_path):
    data = make_sine(seed=1, dtype=torch.float32)
    ck = tmp_path / "adamw.pt"
    config = BaselineConfig(epochs=1, batch_size=40)
    run_baseline(data, "toy_regression", "adamw", config, checkpoint=ck)
    scores = tmp_path / "adamw.pt.scores.json"
    scores.write_text(scores.read_text()[:10])
    with pytest.raises(CorruptFileError, match=f"test scores {scores} are corrupt"):
        run_baseline(data, "toy_regression", "adamw", config, checkpoint=ck)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["mp", "adamw"])
def test_training_job_with_a_damaged_state_checkpoint_fails_naming_it(method, tmp_path):
    """Pipeline level: a damaged checkpoint in the job's state directory stops the job."""
    job = script_job(method, tmp_path)
    state = tmp_path / method / "state" / "checkpoint.pt"
    state.parent.mkdir(parents=True)
    (state.parent / "identity.json").write_text(json.dumps(job["params"]["identity"]))
    trainer_checkpoint(state)
    raw = state.read_bytes()
    state.write_bytes(raw[: len(raw) // 2])
    result = run_script(method, tmp_path)
    assert result.returncode != 0
    log = (tmp_path / f"{method}.log").read_text()
    assert f"CorruptFileError: checkpoint {state} is corrupt or truncated" in log
    assert "delete it to start this run again from scratch" in log
    assert state.read_bytes() == raw[: len(raw) // 2]  # kept for inspection, not replaced
    assert not (tmp_path / method / "predictions.npz").exists()


def test_unreadable_identity_file_discards_the_state_with_a_warning(tmp_path, caplog):
    identity = {"method": "mp", "run": {"epochs": 2}}
    checkpoint = resumable_state(tmp_path / "state", identity)
    trainer_checkpoint(checkpoint)
    assert resumable_state(tmp_path / "state", identity).exists()  # same run: kept
    (tmp_path / "state" / "identity.json").write_text('{"method": "m')  # damaged
    with caplog.at_level(logging.WARNING, logger="harness.jobs"):
        again = resumable_state(tmp_path / "state", identity)
    assert not again.exists()
    assert "its identity file is unreadable (JSONDecodeError); the run starts afresh" in caplog.text
    resumable_state(tmp_path / "state", identity | {"run": {"epochs": 3}})
    assert "it belongs to another configuration" in caplog.text
