import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tfcraft.config import ConfigError, apply_overrides, load_config, parse_override, validate

LAYERS = {"layers": [{"type": "Dense", "units": 1}]}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"model": LAYERS, "trainer": {"epochs": -3}},
            "trainer.epochs: expected an integer >= 1, got -3",
        ),
        (
            {"model": LAYERS, "trainer": {"epochs": 2.5}},
            "trainer.epochs: expected an integer >= 1, got 2.5",
        ),
        (
            {"model": LAYERS, "trainer": {"epoch": 2}},
            "trainer.epoch: unknown key (expected one of: epochs",
        ),
        (
            {"model": LAYERS, "data": {"test_fraction": 1.5, "dataset": "diabetes"}},
            "data.test_fraction: expected a number in (0, 1), got 1.5",
        ),
        (
            {"model": LAYERS, "data": {"path": "/no/such.csv"}},
            "data.path: expected an existing .csv, .npy or .npz file, got '/no/such.csv'",
        ),
        ({"model": LAYERS, "clip": "bogus:1"}, "clip: expected null, a positive number"),
        ({"model": {"layers": []}}, "model.layers: expected a non-empty list, got []"),
        ({}, "model: required key is missing"),
    ],
)
def test_bad_values_name_key_value_and_expectation(data, message):
    with pytest.raises(ConfigError) as info:
        validate(data)
    assert message in str(info.value)


def test_overrides_are_typed_by_yaml():
    assert parse_override("optimizer.learning_rate=1e-3")[1] == 1e-3
    assert parse_override("data.standardize=false")[1] is False
    assert (
        apply_overrides({"model": LAYERS}, ["model.layers.0.units=4"])["model"]["layers"][0][
            "units"
        ]
        == 4
    )
    with pytest.raises(ConfigError, match=r"expected key\.path=value"):
        parse_override("epochs")


def test_load_config_prefixes_file_and_reports_yaml_errors(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML at line"):
        load_config(path)
    path.write_text(yaml.safe_dump({"model": LAYERS}))
    config = load_config(path, overrides=["trainer.epochs=1"])
    assert config.trainer.epochs == 1 and config.name == "bad"


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=True)
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=12,
)
keys = st.sampled_from(
    ["model", "data", "trainer", "loss", "metrics", "clip", "seed", "name", "predict", "x"]
)


@settings(max_examples=150, deadline=None)
@given(
    data=st.dictionaries(keys, values, max_size=5), kind=st.sampled_from(["train", "detect", "rl"])
)
def test_fuzzed_configs_give_only_clean_config_errors(data, kind):
    try:
        validate(data, kind)
    except ConfigError as error:
        assert error.problems and all(
            ":" in line and "Traceback" not in line for line in error.problems
        )
