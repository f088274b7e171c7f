"""From a validated config to objects: data splits and Keras layers, losses, metrics, optimizers.

Names are looked up in registries only: tfcraft's registered Keras objects
(`keras.saving.get_registered_object("tfcraft>Name")`) first, then Keras'
built-ins through `keras.*.deserialize(...)` (Keras safe mode, its default). `Lambda` layers
and anything that is not a layer/loss/metric/optimizer are refused, so a
config can never run code. A constructor that rejects its arguments becomes a
`ConfigError` naming the key path (`model.layers[1]: ...`).

Example:

>>> layer = build_layer({"type": "Linear", "units": 4}, "model.layers[0]")
>>> type(layer).__name__, layer.units
('Linear', 4)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tfcraft import datasets
from tfcraft.config import ConfigError

__all__ = [
    "Split",
    "build_layer",
    "build_loss",
    "build_metrics",
    "build_model",
    "build_optimizer",
    "load_features",
    "load_split",
]

_REFUSED_LAYERS = {"Lambda", "TFSMLayer", "JaxLayer", "FlaxLayer", "TorchModuleWrapper"}
_OUTPUT_SIZE_KEYS = ("units", "num_classes", "event_size")


def _name_and_args(spec: object, where: str) -> tuple[str, dict[str, Any]]:
    if isinstance(spec, str):
        return spec, {}
    args = {k: v for k, v in spec.items() if k != "type"}
    return spec["type"], args


def _registered(name: str, base: type) -> type | None:
    """Tfcraft's registered class `name` if it subclasses `base`."""
    found = keras.saving.get_registered_object(f"tfcraft>{name}")
    return found if isinstance(found, type) and issubclass(found, base) else None


def _construct(cls_or_fn, args: dict, where: str, name: str):
    try:
        return cls_or_fn(**args)
    except (TypeError, ValueError) as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"{where}: {name}({_show_args(args)}) was refused: {detail}") from None


def _show_args(args: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in args.items())


def build_layer(spec: object, where: str, output_size: int | None = None) -> keras.layers.Layer:
    """A layer from `Name` or `{type: Name, **args}`; `units: auto` becomes `output_size`."""
    name, args = _name_and_args(spec, where)
    for key in _OUTPUT_SIZE_KEYS:
        if args.get(key) == "auto":
            if output_size is None:
                raise ConfigError(f"{where}.{key}: 'auto' needs the data's output size")
            args[key] = output_size
    cls = _registered(name, keras.layers.Layer) or _keras_class(keras.layers, name)
    if name in _REFUSED_LAYERS or (cls is not None and issubclass(cls, keras.Model)):
        raise ConfigError(f"{where}.type: {name!r} is refused: configs are data, not code")
    if cls is None:
        raise ConfigError(
            f"{where}.type: expected a Keras layer or a registered tfcraft layer "
            f"(Linear, DenseFlipout, NormalHead, ...), got {name!r}"
        )
    return _construct(cls, args, where, name)


def build_model(config, num_features: int, output_size: int, normalizer=None) -> keras.Model:
    """A `keras.Sequential` over `(num_features,)` inputs: normaliser, then the config's layers."""
    layers = [
        build_layer(spec, f"model.layers[{index}]", output_size)
        for index, spec in enumerate(config.model.layers)
    ]
    model = keras.Sequential(
        [keras.Input((num_features,)), *([normalizer] if normalizer else []), *layers],
        name=config.name.replace(".", "_").replace("-", "_") if config.name else None,
    )
    return model


def build_loss(spec: object, head_family: str | None = None):
    """A loss by name: tfcraft's (`Huber`, `BinaryFocal`, ...) or Keras' (`mse`, ...).

    `NegativeLogLikelihood` without `distribution` takes the family of the model's head.
    """
    name, args = _name_and_args(spec, "loss")
    cls = _registered(name, keras.losses.Loss)
    if cls is not None:
        if name == "NegativeLogLikelihood" and args.get("distribution") is None:
            if head_family is None:
                raise ConfigError(
                    "loss: NegativeLogLikelihood needs `distribution` or a model ending in "
                    "a distribution head (NormalHead, CategoricalHead, ...)"
                )
            args["distribution"] = head_family
        return _construct(cls, args, "loss", name)
    return _keras_object(keras.losses, name, args, "loss")


def build_metrics(specs: list) -> list:
    """Metrics by name: tfcraft's (`Precision`, `ExpectedCalibrationError`, ...) or Keras'."""
    metrics = []
    for index, spec in enumerate(specs):
        where = f"metrics[{index}]"
        name, args = _name_and_args(spec, where)
        cls = _registered(name, keras.metrics.Metric)
        if cls is not None:
            metrics.append(_construct(cls, args, where, name))
        else:
            metrics.append(_keras_object(keras.metrics, name, args, where))
    return metrics


def build_optimizer(spec: object):
    """A Keras optimizer by name with its arguments: `{type: adam, learning_rate: 1e-3}`."""
    name, args = _name_and_args(spec, "optimizer")
    return _keras_object(keras.optimizers, name, args, "optimizer")


_BASES = {
    "layers": ("layer", keras.layers.Layer),
    "losses": ("loss", keras.losses.Loss),
    "metrics": ("metric", keras.metrics.Metric),
    "optimizers": ("optimizer", keras.optimizers.Optimizer),
}


def _keras_class(module, name: str) -> type | None:
    """The public Keras class `module.name` (e.g. `keras.layers.Dense`), if it is one."""
    base = _BASES[module.__name__.rsplit(".", 1)[-1]][1]
    found = getattr(module, name, None) if name.isidentifier() else None
    return found if isinstance(found, type) and issubclass(found, base) else None


def _keras_object(module, name: str, args: dict, where: str):
    """A Keras built-in by class name (`MeanSquaredError`) or alias (`mse`, `adam`)."""
    kind = _BASES[module.__name__.rsplit(".", 1)[-1]][0]
    cls = _keras_class(module, name)
    if cls is not None:
        return _construct(cls, args, where, name)
    try:
        found = module.get(name)  # aliases: "mse", "adam", "accuracy"
    except (TypeError, ValueError):
        found = None
    if found is None or isinstance(found, type):
        raise ConfigError(
            f"{where}: expected a Keras or registered tfcraft {kind} name, got {name!r}"
        )
    if not args:
        return name  # the Trainer resolves the alias
    if isinstance(found, keras.optimizers.Optimizer):
        return _construct(type(found), args, where, name)
    raise ConfigError(
        f"{where}: {name!r} is a function and takes no arguments; use its class name "
        f"with arguments instead, got {_show_args(args)}"
    )


# ---------------------------------------------------------------- data


@dataclasses.dataclass
class Split:
    """Train/validation/test arrays of a tabular task (targets standardised for regression)."""

    task: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int | None
    target_mean: float = 0.0
    target_std: float = 1.0

    @property
    def output_size(self) -> int:
        """Units of the output layer: classes (1 for binary), else 1 target."""
        if self.task == "classification":
            return 1 if self.num_classes == 2 else int(self.num_classes)
        return 1

    def scaled(self, y: np.ndarray) -> np.ndarray:
        """Targets in training units (standardised for regression)."""
        if self.task == "classification":
            return y
        return ((y - self.target_mean) / self.target_std).astype(np.float32)


def load_features(path: str | Path) -> np.ndarray:
    """Feature rows without a target, for `predict`: `.csv` (header), `.npy` (2-D) or `.npz` `x`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--input: no file at {str(path)!r}")
    try:
        if path.suffix == ".npy":
            x = np.load(path, allow_pickle=False)
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                if "x" not in archive.files:
                    raise ConfigError(f"--input: {path} must hold an array 'x'")
                x = archive["x"]
        elif path.suffix == ".csv":
            import pandas as pd

            table = pd.read_csv(path)
            text = [c for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])]
            if text:
                raise ConfigError(f"--input: columns {text} of {path} are not numeric")
            x = table.to_numpy()
        else:
            raise ConfigError(f"--input: expected a .csv, .npy or .npz file, got {str(path)!r}")
    except (ValueError, OSError) as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"--input: cannot read {path}: {error}") from None
    x = np.asarray(x, np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ConfigError(f"--input: expected a non-empty 2-D table, got shape {x.shape}")
    if not np.isfinite(x).all():
        rows = np.unique(np.nonzero(~np.isfinite(x))[0])[:5].tolist()
        raise ConfigError(f"--input: {path} has NaN or infinite values (rows {rows})")
    return x


def _read_source(data) -> tuple[np.ndarray, np.ndarray, str]:
    """`(X, y, task)` of a data section (bundled set or the user's file)."""
    if data.dataset is not None:
        if data.dataset in datasets.CLASSIFICATION_SETS:
            X, y = datasets.load_classification(data.dataset)
            return X, y, "classification"
        X, y = datasets.load_regression(data.dataset)
        return X, y, "regression"
    path = Path(data.path)
    try:
        if path.suffix == ".npy":
            table = np.load(path, allow_pickle=False)
            if table.ndim != 2 or isinstance(data.target, str):
                raise ValueError(
                    f"a .npy file must be a 2-D table with the target given by column index; "
                    f"got shape {table.shape}, target={data.target!r}"
                )
            column = data.target % table.shape[1]
            X, y = np.delete(table, column, axis=1), table[:, column]
        else:
            X, y = datasets.load_arrays(path, target=data.target)
    except (ValueError, OSError) as error:
        raise ConfigError(f"data.path: cannot use {str(path)!r}: {error}") from None
    X, y = np.asarray(X, np.float32), np.asarray(y, np.float32)
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        raise ConfigError(f"data.path: {str(path)!r} has NaN or infinite values")
    return X, y, "regression"


def load_split(data, seed: int) -> Split:
    """Load, split (seeded) and standardise the data of a `TrainConfig`."""
    X, y, task = _read_source(data)
    if data.task != "auto":
        task = data.task
    if len(X) < 10:
        raise ConfigError(f"data: expected at least 10 rows, got {len(X)}")
    num_classes = None
    if task == "classification":
        if not np.all(y == np.round(y)) or y.min() < 0:
            raise ConfigError("data.target: a classification target must hold labels 0, 1, ...")
        y = y.astype(np.int32)
        num_classes = int(y.max()) + 1
        if num_classes < 2:
            raise ConfigError("data.target: a classification target needs at least 2 classes")
    train, test = datasets.train_test_split_indices(len(X), data.test_fraction, seed)
    val = None
    if data.validation_fraction > 0:
        inner_train, inner_val = datasets.train_test_split_indices(
            len(train), data.validation_fraction, seed + 1
        )
        train, val = train[inner_train], train[inner_val]
    split = Split(
        task=task,
        x_train=X[train],
        y_train=y[train],
        x_val=None if val is None else X[val],
        y_val=None if val is None else y[val],
        x_test=X[test],
        y_test=y[test],
        num_classes=num_classes,
    )
    if task == "regression" and data.standardize:
        split.target_mean = float(split.y_train.mean())
        split.target_std = float(split.y_train.std()) or 1.0
    return split


def normalizer_for(x_train: np.ndarray) -> keras.layers.Layer:
    """A `keras.layers.Normalization` with the training features' mean and variance.

    It is the model's first layer, so `model.keras` takes raw features.
    """
    variance = np.maximum(x_train.var(axis=0), 1e-12)
    return keras.layers.Normalization(mean=x_train.mean(axis=0), variance=variance)
