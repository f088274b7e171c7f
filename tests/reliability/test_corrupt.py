"""Corrupt or malformed inputs: each a clear error naming the file or column, nothing rewritten.

Model files, checkpoint files (index, data, the `checkpoint` list, the JSON
sidecar), detector and agent folders, YAML configs and CSV data are truncated,
overwritten with garbage or emptied for real; the loaders must name what is
wrong and leave every file on disk byte for byte as it was.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest

from tfcraft.saving import load_model
from tfcraft.training import Trainer


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def truncate(path):
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 2)])


def garbage(path):
    path.write_bytes(os.urandom(max(64, path.stat().st_size)))


def empty(path):
    path.write_bytes(b"")


DAMAGE = {"truncated": truncate, "garbage": garbage, "empty": empty}


@pytest.mark.fault("corrupt")
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_keras_file_is_named(tmp_path, damage):
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(tmp_path / "model.keras")
    DAMAGE[damage](tmp_path / "model.keras")
    with pytest.raises(ValueError, match=r"model\.keras' is not a readable \.keras model file"):
        load_model(tmp_path / "model.keras")


def trained(directory):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1)])
    trainer = Trainer(model, "adam", loss="mse", seed=0, checkpoint_dir=directory)
    x = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
    trainer.fit((x, x[:, :1]), epochs=2, batch_size=8, verbose=0)
    return trainer, (x, x[:, :1])


CHECKPOINT_FILES = {
    "data file truncated": ("ckpt-8.data-00000-of-00001", truncate, r"ckpt-8 could not be"),
    "data file garbage": ("ckpt-8.data-00000-of-00001", garbage, r"ckpt-8 could not be"),
    "index file garbage": ("ckpt-8.index", garbage, r"ckpt-8 could not be restored"),
    "checkpoint list garbage": ("checkpoint", garbage, r"checkpoint index .*checkpoint is corrupt"),
    "sidecar truncated": ("ckpt-8.json", truncate, r"ckpt-8\.json is missing or corrupt"),
}


@pytest.mark.fault("corrupt")
@pytest.mark.parametrize("case", list(CHECKPOINT_FILES))
def test_damaged_checkpoint_is_named_and_left_alone(tmp_path, case):
    name, damage, message = CHECKPOINT_FILES[case]
    _, data = trained(tmp_path)
    damage(tmp_path / name)
    before = snapshot(tmp_path)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1)])
    trainer = Trainer(model, "adam", loss="mse", seed=0, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match=message):
        trainer.fit(data, epochs=3, batch_size=8, resume=True, verbose=0)
    assert snapshot(tmp_path) == before  # nothing overwritten, nothing half-written


@pytest.fixture(scope="module")
def detector_folder(tmp_path_factory):
    from tfcraft.anomaly import GaussianMixtureDetector

    folder = tmp_path_factory.mktemp("detector") / "gmm"
    X = np.random.default_rng(0).normal(size=(200, 4))
    GaussianMixtureDetector(num_components=1, seed=0).fit(X).save(folder)
    return folder


DETECTOR_FILES = {
    "config garbage": ("config.json", garbage, r"config\.json' is not valid JSON"),
    "config empty": ("config.json", empty, r"config\.json' is not valid JSON"),
    "weights truncated": ("weights.npz", truncate, r"gmm' is corrupt or incomplete"),
    "weights garbage": ("weights.npz", garbage, r"gmm' is corrupt or incomplete"),
    "config missing": ("config.json", os.remove, r"No tfcraft detector at .*gmm'"),
}


@pytest.mark.fault("corrupt")
@pytest.mark.parametrize("case", list(DETECTOR_FILES))
def test_damaged_detector_folder_is_named(tmp_path, detector_folder, case):
    import shutil

    from tfcraft.anomaly import load_detector

    name, damage, message = DETECTOR_FILES[case]
    folder = tmp_path / "gmm"
    shutil.copytree(detector_folder, folder)
    assert (folder / name).is_file(), sorted(p.name for p in folder.iterdir())
    damage(folder / name)
    before = snapshot(folder)
    with pytest.raises(ValueError, match=message):
        load_detector(folder)
    assert snapshot(folder) == before


@pytest.mark.fault("corrupt")
def test_detector_with_the_wrong_number_of_features_says_so(detector_folder):
    from tfcraft.anomaly import load_detector

    detector = load_detector(detector_folder)
    message = r"X has 5 features, but GaussianMixtureDetector is expecting 4"
    for method in ("score_samples", "decision_function", "predict"):
        with pytest.raises(ValueError, match=message):
            getattr(detector, method)(np.zeros((3, 5)))


@pytest.mark.fault("corrupt")
def test_damaged_agent_checkpoint_is_named(tmp_path):
    from tfcraft.rl import PPO

    def agent():
        return PPO("CartPole-v1", n_envs=1, seed=0, n_steps=16, batch_size=16, n_epochs=1)

    agent().learn(32, checkpoint_dir=tmp_path, checkpoint_freq=1)
    truncate(tmp_path / "ckpt-2.json")
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match=r"ckpt-2\.json is missing or corrupt"):
        agent().learn(64, checkpoint_dir=tmp_path, checkpoint_freq=1)
    assert snapshot(tmp_path) == before


YAML_CASES = {
    "invalid YAML": ("name: [unclosed\n", r"bad\.yaml: not valid YAML at line"),
    "binary file": (b"\x89PNG\r\n\x1a\n\xff\xfe", r"bad\.yaml: not a text \(UTF-8\) file"),
    "empty file": ("", r"bad\.yaml"),
    "a list, not a mapping": ("- 1\n- 2\n", r"bad\.yaml"),
    "unknown key": ("name: x\nbogus_key: 1\n", r"bad\.yaml.*bogus_key"),
}


@pytest.mark.fault("corrupt")
@pytest.mark.parametrize("case", list(YAML_CASES))
def test_malformed_yaml_config_is_named(tmp_path, case):
    from tfcraft.config import ConfigError, load_config

    content, message = YAML_CASES[case]
    path = tmp_path / "bad.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError, match=message):
        load_config(path)


CSV_CASES = {
    "missing target column": ("a,b\n1,2\n3,4\n", "price", r"price"),
    "text in a numeric column": ("a,b,y\n1,2,0\n3,oops,1\n", "y", r"\bb\b"),
    "empty file": ("", -1, r"Cannot read .*data\.csv' as a CSV table"),
    "only a header": ("a,b,y\n", -1, r"data\.csv' has no data rows"),
}


@pytest.mark.fault("corrupt")
@pytest.mark.parametrize("case", list(CSV_CASES))
def test_malformed_csv_names_the_file_or_column(tmp_path, case):
    from tfcraft.datasets import load_arrays

    content, target, message = CSV_CASES[case]
    path = tmp_path / "data.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_arrays(path, target=target)


@pytest.mark.fault("corrupt", cases=2)
def test_nan_features_and_text_in_prediction_input_are_named(tmp_path):
    from tfcraft.builders import load_features
    from tfcraft.config import ConfigError

    path = tmp_path / "rows.csv"
    path.write_text("a,b\n1,2\n3,\n5,6\n")
    with pytest.raises(ConfigError, match=r"rows\.csv has NaN or infinite values \(rows \[1\]\)"):
        load_features(path)
    path.write_text("a,b\n1,2\n3,x\n")
    with pytest.raises(ConfigError, match=r"columns \['b'\] of .*rows\.csv are not numeric"):
        load_features(path)
