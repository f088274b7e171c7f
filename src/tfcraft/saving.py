"""Loading `.keras` model files safely, with errors that name the file.

`load_model(path)` is `keras.saving.load_model(path, safe_mode=True)` behind
checks of its own, done before Keras deserialises anything:

- the file is a complete zip archive with a `config.json` (a truncated or
  garbage file is named as such, not as "file not found");
- every object in `config.json` is a Keras or tfcraft object, or one that the
  program registered with `keras.saving.register_keras_serializable`: a config
  naming any other module or function (the module-path trick of
  CVE-2025-9906, `os.system`, `keras.config.enable_unsafe_deserialization`)
  is refused;
- a `Lambda` layer (Python bytecode) is refused.

Every failure is a `ValueError` naming the file. tfcraft itself loads models
only through here (`DeepEnsemble.load`, `tfcraft evaluate/predict`).

Example:

>>> import tempfile, keras
>>> path = tempfile.mkdtemp() + "/model.keras"
>>> keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).save(path)
>>> load_model(path).output_shape
(None, 1)
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import keras

__all__ = ["load_model"]

_TRUSTED_MODULES = ("keras", "tfcraft")


def _objects(node):
    """Every dict in a deserialisation config that names a class or function."""
    if isinstance(node, dict):
        if "class_name" in node:
            yield node
        for value in node.values():
            yield from _objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from _objects(value)


def _check_config(config: object, shown: str) -> None:
    for entry in _objects(config):
        module = str(entry.get("module") or "")
        class_name = entry.get("class_name")
        registered = entry.get("registered_name") or class_name
        if class_name == "Lambda" or registered == "Lambda":
            raise ValueError(
                f"{shown} holds a `Lambda` layer (Python code), which tfcraft does not load. "
                "Rebuild the model with a registered layer subclass instead."
            )
        # No module: Keras looks the name up among its own and registered objects only;
        # `builtins` carries tuples and the like (`__tuple__`), never a function.
        plain = module == "" or (module == "builtins" and str(class_name).startswith("__"))
        trusted = plain or module.split(".")[0] in _TRUSTED_MODULES
        is_registered = keras.saving.get_registered_object(str(registered)) is not None
        if not trusted and not is_registered:
            raise ValueError(
                f"{shown} names an object that is neither Keras' nor tfcraft's nor registered "
                f"in this program: module={module!r}, class_name={class_name!r}. Refusing to "
                "load it (a model file must not choose what code runs). Register the class "
                "with `keras.saving.register_keras_serializable` if you trust it."
            )


def load_model(path: str | os.PathLike, compile: bool = True) -> keras.Model:
    """Load a `.keras` file with safe mode on, refusing code and unknown objects.

    Args:
        path: A `.keras` file.
        compile: Passed to `keras.saving.load_model`. Defaults to `True`.

    Returns:
        The model.

    Raises:
        ValueError: the file is missing, truncated, not a `.keras` archive, holds
            a `Lambda` layer or names an unregistered or non-Keras object.
    """
    path = Path(path)
    shown = repr(str(path))
    if not path.is_file():
        raise ValueError(f"No model file at {shown}. Received: path={shown}")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            if bad is not None:
                raise zipfile.BadZipFile(f"member {bad!r} fails its CRC check")
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, OSError, UnicodeDecodeError, ValueError) as error:
        raise ValueError(
            f"{shown} is not a readable .keras model file: it is truncated, corrupt or "
            f"of another format ({type(error).__name__}: {error})."
        ) from None
    _check_config(config, shown)
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as error:  # Keras raises ValueError, TypeError, OSError, ...
        raise ValueError(
            f"{shown} could not be loaded as a Keras model ({type(error).__name__}: "
            f"{str(error)[:500]})."
        ) from error
