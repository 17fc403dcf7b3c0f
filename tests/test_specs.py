import pytest

from amp import specs

EVERY_KIND = (
    specs.Linear(3, prior_var=0.5),
    specs.Conv2d(4, 3, padding=1, padding_mode="zeros", prior_var=2.0),
    specs.LeakyReLU(0.2),
    specs.MaxPool2d(2),
    specs.Flatten(),
    specs.Argmax(regularize=False),
    specs.Softmax(),
    specs.Regression(0.01),
)


def test_the_table_names_every_spec_class_once():
    assert {type(layer) for layer in EVERY_KIND} == set(specs.SPEC_TYPES.values())
    assert all(name == kind.__name__ for name, kind in specs.SPEC_TYPES.items())


@pytest.mark.parametrize("layer", EVERY_KIND, ids=lambda layer: type(layer).__name__)
def test_spec_dict_round_trip(layer):
    entry = specs.to_dict(layer)
    assert entry["type"] == type(layer).__name__
    assert all(isinstance(v, str | int | float | bool | type(None)) for v in entry.values())
    back = specs.from_dict(entry)
    assert back == layer
    assert type(back) is type(layer)


@pytest.mark.parametrize("name", list(specs.ARCHITECTURES))
def test_named_architectures_round_trip(name):
    layers = specs.arch(name)
    assert tuple(specs.from_dict(specs.to_dict(layer)) for layer in layers) == layers


def test_linear_entry_is_the_documented_one():
    assert specs.to_dict(specs.Linear(32)) == {
        "type": "Linear",
        "out_features": 32,
        "prior_var": None,
    }


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"type": "system", "command": "rm"}, "not a layer spec entry"),
        ({"out_features": 3}, "not a layer spec entry"),
        (["Linear", 3], "not a layer spec entry"),
        ({"type": "Linear", "out_features": 3, "bias": False}, r"no field\(s\) \['bias'\]"),
        ({"type": "Linear"}, "invalid Linear spec"),
        ({"type": "Linear", "out_features": -1}, "invalid out_features"),
    ],
)
def test_bad_spec_entries_are_refused(entry, message):
    with pytest.raises(ValueError, match=message):
        specs.from_dict(entry)


def test_to_dict_refuses_other_objects():
    with pytest.raises(ValueError, match="not a layer spec"):
        specs.to_dict({"type": "Linear"})
