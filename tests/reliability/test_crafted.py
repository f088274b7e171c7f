"""Crafted model files and code in configs are refused; no pickle; configs are data.

Each crafted `.keras` file carries a payload that would create a marker file
if any code in it ran; the tests check the refusal, its message, and that the
marker does not exist.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from tfcraft.saving import load_model

SRC = Path(__file__).parents[2] / "src" / "tfcraft"


def saved_model(path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.save(path)
    return model


def rewrite_config(source, target, edit):
    with zipfile.ZipFile(source) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    edit(config)
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(target, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return target


def replace_layer(entry):
    def edit(config):
        config["config"]["layers"][1] = entry

    return edit


def set_activation(entry):
    def edit(config):
        config["config"]["layers"][1]["config"]["activation"] = entry

    return edit


def crafted_cases(marker):
    command = f"touch {marker}"
    return {
        # CVE-2025-9906: a config naming an arbitrary module and function.
        "module-path os.system": replace_layer(
            {"module": "os", "class_name": "system", "config": {"command": command}}
        ),
        "unsafe-mode switch": replace_layer(
            {
                "module": "keras.config",
                "class_name": "enable_unsafe_deserialization",
                "config": {},
                "registered_name": "enable_unsafe_deserialization",
            }
        ),
        "unregistered class": replace_layer(
            {"module": "evil.layers", "class_name": "EvilLayer", "config": {"name": "evil"}}
        ),
        "function in a nested config": set_activation(
            {
                "module": "subprocess",
                "class_name": "function",
                "config": "getoutput",
                "registered_name": "function",
            }
        ),
        "builtins eval": set_activation(
            {"module": "builtins", "class_name": "eval", "config": command}
        ),
    }


CASES = list(crafted_cases("MARKER"))


@pytest.mark.fault("crafted")
def test_lambda_layer_is_refused_and_safe_mode_is_on(tmp_path):
    marker = tmp_path / "ran"
    # A Lambda whose bytecode touches `marker`: it runs once when the model is built.
    payload = f"lambda x: x + 0.0 * __import__('os').system('touch {marker}')"
    model = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(eval(payload))])
    model.save(tmp_path / "lambda.keras")
    marker.unlink()
    with pytest.raises(ValueError, match=r"lambda\.keras' holds a `Lambda` layer"):
        load_model(tmp_path / "lambda.keras")
    # Keras' own safe mode (what tfcraft leaves on) refuses it as well.
    with pytest.raises(ValueError, match="safe_mode"):
        keras.saving.load_model(tmp_path / "lambda.keras")
    assert not marker.exists()


@pytest.mark.fault("crafted")
@pytest.mark.parametrize("case", CASES)
def test_crafted_config_is_refused_before_any_code_runs(tmp_path, case):
    marker = tmp_path / "ran"
    saved_model(tmp_path / "good.keras")
    crafted = rewrite_config(
        tmp_path / "good.keras", tmp_path / "crafted.keras", crafted_cases(marker)[case]
    )
    with pytest.raises(ValueError, match=r"crafted\.keras") as error:
        load_model(crafted)
    assert re.search("neither Keras' nor tfcraft's|could not be loaded", str(error.value))
    assert not marker.exists()


@pytest.mark.fault("crafted")
def test_crafted_member_of_an_ensemble_folder_is_refused(tmp_path):
    from tfcraft.bayes import DeepEnsemble

    def build(seed):
        return keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])

    DeepEnsemble(build, num_members=2, seed=0).save(tmp_path / "ensemble")
    member = tmp_path / "ensemble" / "member_1.keras"
    marker = tmp_path / "ran"
    rewrite_config(member, member, crafted_cases(marker)["module-path os.system"])
    with pytest.raises(ValueError, match=r"member_1\.keras' names an object .*module='os'"):
        DeepEnsemble.load(tmp_path / "ensemble")
    assert not marker.exists()


@keras.saving.register_keras_serializable(package="reliability_tests")
class Doubling(keras.layers.Layer):
    def call(self, x):
        return 2.0 * x


def test_registered_and_tfcraft_objects_still_load(tmp_path):
    from tfcraft.layers import DenseFlipout
    from tfcraft.losses import Huber

    model = keras.Sequential(
        [keras.Input((3,)), Doubling(), DenseFlipout(4), keras.layers.Dense(1)]
    )
    model.compile(loss=Huber(delta=0.5))
    model.save(tmp_path / "model.keras")
    loaded = load_model(tmp_path / "model.keras")
    x = np.ones((2, 3), "float32")
    np.testing.assert_allclose(loaded(x, training=False), model(x, training=False), rtol=1e-6)
    assert isinstance(loaded.loss, Huber)


def _source_files():
    return sorted(p for p in SRC.rglob("*.py"))


@pytest.mark.fault("crafted")
def test_no_pickle_of_user_facing_artefacts():
    # Not user-facing artefacts: a data file shipped inside an installed package, and
    # the results `launch_local` passes back from the worker processes it started
    # itself (multiprocessing pickles `fn` and its arguments on the way in anyway).
    allowed = {
        "datasets/markets.py": ("pd.read_pickle(path, compression",),
        "training/launch.py": ("import pickle", "pickle.dump(result", "pickle.loads(path"),
    }
    pattern = re.compile(
        r"\bimport pickle\b|\bpickle\.|cloudpickle|\bdill\b|joblib|read_pickle|to_pickle"
        r"|allow_pickle=True|safe_mode=False|torch\.load"
    )
    found = []
    for path in _source_files():
        relative = path.relative_to(SRC).as_posix()
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if pattern.search(code) and not any(a in code for a in allowed.get(relative, ())):
                found.append(f"{relative}:{number}: {line.strip()}")
    assert not found, found


@pytest.mark.fault("crafted")
def test_configs_are_data_no_eval_exec_or_imports_from_config():
    pattern = re.compile(
        r"\beval\(|\bexec\(|yaml\.load\(|unsafe_load|FullLoader|UnsafeLoader|__import__\("
    )
    offenders = [
        f"{p.relative_to(SRC)}:{n}"
        for p in _source_files()
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line) and "model.eval" not in line
    ]
    assert not offenders, offenders
    # import_module only with fixed names (lazy subpackages; the recipes' own list).
    imports = [
        line.strip()
        for p in _source_files()
        for line in p.read_text().splitlines()
        if "import_module(" in line
    ]
    assert imports == [
        'return importlib.import_module(f"tfcraft.{name}")',
        'module = importlib.import_module(f"tfcraft.recipes.{RECIPES[RECIPES.index(name)]}")',
    ] or all("tfcraft." in line for line in imports), imports


@pytest.mark.fault("crafted", cases=3)
def test_config_cannot_run_code_or_name_unregistered_objects(tmp_path):
    from tfcraft.config import ConfigError, load_config

    marker = tmp_path / "ran"
    good = (SRC / "configs" / "custom_classification.yaml").read_text()
    tagged = tmp_path / "tagged.yaml"
    tagged.write_text(good + f'extra: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(ConfigError, match=r"tagged\.yaml: not valid YAML"):
        load_config(tagged)
    config = load_config(SRC / "configs" / "custom_classification.yaml")
    from tfcraft.builders import build_layer, build_loss

    # Names are looked up in registries only; a dotted path is refused, not imported.
    with pytest.raises(ConfigError, match=r"model.layers\[0\].type: expected .*got 'os.system'"):
        build_layer({"type": "os.system", "command": f"touch {marker}"}, "model.layers[0]")
    with pytest.raises(ConfigError, match=r"builtins\.eval"):
        build_loss({"type": "builtins.eval", "source": f"open('{marker}', 'w')"})
    assert config.name == "custom_classification"
    assert not marker.exists()
