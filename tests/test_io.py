import collections
import enum
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch

from amp import io, specs

PLAIN = {
    "none": None,
    "flags": [True, False],
    "numbers": (3, -2.5, float("inf"), 1 + 2j),
    "text": "float64",
    "bytes": b"\x00\x01",
    "tensor": torch.arange(6, dtype=torch.float64).view(2, 3),
    "generator": torch.Generator().manual_seed(0).get_state(),
    "parameter": torch.nn.Parameter(torch.ones(2)),
    "size": torch.Size([2, 3]),
    "ordered": collections.OrderedDict(a=torch.zeros(1)),
    "keys": {0: "int key", (1, 2): "tuple key", 2.5: "float key"},
    "nested": [{"layers": [specs.to_dict(specs.Linear(3))]}],
}


def test_plain_data_round_trips_through_the_safe_loader(tmp_path):
    assert io.plain_data_problem(PLAIN) is None
    io.save_checkpoint(tmp_path / "ck.pt", PLAIN)
    back = io.load_checkpoint(tmp_path / "ck.pt")
    assert back.keys() == PLAIN.keys()
    assert torch.equal(back["tensor"], PLAIN["tensor"])
    assert torch.equal(back["generator"], PLAIN["generator"])
    assert back["numbers"] == PLAIN["numbers"]
    assert back["keys"] == PLAIN["keys"]
    assert back["nested"] == PLAIN["nested"]
    assert type(back["size"]) is torch.Size
    assert type(back["ordered"]) is collections.OrderedDict


class Mode(enum.Enum):
    FAST = "fast"


@dataclass
class Settings:
    lr: float


class Pair(NamedTuple):
    a: int
    b: int


@pytest.mark.parametrize(
    ("state", "where", "kind"),
    [
        ({"specs": [specs.Linear(3)]}, r"state\['specs'\]\[0\]", "amp.specs.Linear"),
        ({"config": {"mode": Mode.FAST}}, r"state\['config'\]\['mode'\]", "Mode"),
        ({"dtype": torch.float64}, r"state\['dtype'\]", "torch.dtype"),
        ({"array": np.zeros(3)}, r"state\['array'\]", "numpy.ndarray"),
        ({"scalar": np.float64(1.0)}, r"state\['scalar'\]", "numpy.float64"),
        ({"pair": Pair(1, 2)}, r"state\['pair'\]", "Pair"),
        ({"settings": Settings(0.1)}, r"state\['settings'\]", "Settings"),
        ({Path("a"): 1}, "a key of state", "PosixPath|WindowsPath"),
        ({"fn": len}, r"state\['fn'\]", "builtin_function_or_method"),
    ],
)
def test_save_refuses_what_the_safe_loader_would_not_read(state, where, kind, tmp_path):
    path = tmp_path / "ck.pt"
    with pytest.raises(TypeError, match=rf"cannot save checkpoint {path}: {where} is of type"):
        io.save_checkpoint(path, state)
    with pytest.raises(TypeError, match=kind):
        io.save_checkpoint(path, state)
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary left behind
