"""Run configs: YAML files validated by a schema before any work starts.

A config is data, never code: layers, losses, metrics, optimizers, detectors,
agents and reward functions are named by their registered names and given
keyword arguments; nothing is evaluated or imported from a string. Every
problem is reported with its key path, the value found and what was expected,
e.g. `trainer.epochs: expected an integer >= 1, got -3`.

Three schemas, one per command: `TrainConfig` (`tfcraft train`),
`DetectConfig` (`tfcraft detect`) and `RLConfig` (`tfcraft rl`).
`load_config(path, kind, overrides)` reads a file, applies `--set key=value`
overrides (each value parsed as YAML) and validates; `ConfigError` carries the
messages.

Example:

>>> config = validate({"model": {"layers": [{"type": "Dense", "units": 1}]}})
>>> config.trainer.epochs, config.data.dataset
(20, 'diabetes')
>>> try:
...     validate({"model": {"layers": []}, "trainer": {"epochs": -3}})
... except ConfigError as error:
...     print(error)
model.layers: expected a non-empty list, got []
trainer.epochs: expected an integer >= 1, got -3
"""

from __future__ import annotations

import contextlib
import importlib.resources
import math
import numbers
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import pydantic
import yaml
from pydantic import BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from tfcraft.datasets import CLASSIFICATION_SETS, OUTLIER_SETS, REGRESSION_SETS
from tfcraft.training import clipping

__all__ = [
    "ConfigError",
    "DetectConfig",
    "RLConfig",
    "TrainConfig",
    "apply_overrides",
    "bundled_config",
    "bundled_configs",
    "dump_yaml",
    "load_config",
    "parse_override",
    "validate",
]

SCHEMAS: dict[str, type] = {}  # filled below: command name -> schema class


class ConfigError(ValueError):
    """A config that cannot be used; `problems` holds one message per problem."""

    def __init__(self, problems: Sequence[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


# ---------------------------------------------------------------- value checks


def _fail(expected: str) -> PydanticCustomError:
    return PydanticCustomError("tfcraft_expected", "expected " + expected)


def _integer(minimum: int | None = None, optional: bool = False) -> Any:
    expected = "an integer" + (f" >= {minimum}" if minimum is not None else "")
    expected += " or null" if optional else ""

    def check(value: object) -> object:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise _fail(expected)
        if minimum is not None and value < minimum:
            raise _fail(expected)
        return int(value)

    return Annotated[int | None if optional else int, BeforeValidator(check)]


def _number(low: float, high: float, closed: str = "neither") -> Any:
    """A finite float in an interval; `closed` is "neither", "left", "right" or "both"."""
    left = "[" if closed in ("left", "both") else "("
    right = "]" if closed in ("right", "both") else ")"
    expected = f"a number in {left}{low:g}, {high:g}{right}"

    def check(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise _fail(expected)
        value = float(value)
        above = value >= low if left == "[" else value > low
        below = value <= high if right == "]" else value < high
        if not (math.isfinite(value) and above and below):
            raise _fail(expected)
        return value

    return Annotated[float, BeforeValidator(check)]


def _choice(*choices: str) -> Any:
    expected = "one of " + ", ".join(repr(c) for c in choices)

    def check(value: object) -> str:
        if value not in choices or not isinstance(value, str):
            raise _fail(expected)
        return value

    return Annotated[str, BeforeValidator(check)]


def _string(pattern: Callable[[str], bool] | None = None, what: str = "a string") -> Any:
    def check(value: object) -> str:
        if not isinstance(value, str) or not value or (pattern and not pattern(value)):
            raise _fail(what)
        return value

    return Annotated[str, BeforeValidator(check)]


def _optional_choice(*choices: str) -> Any:
    expected = "one of " + ", ".join(repr(c) for c in choices) + " or null"

    def check(value: object) -> str | None:
        if value is not None and (not isinstance(value, str) or value not in choices):
            raise _fail(expected)
        return value

    return Annotated[str | None, BeforeValidator(check)]


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise _fail("true or false")
    return value


def _spec(value: object) -> object:
    """A registered name, or a mapping with a `type` name and keyword arguments."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict) and isinstance(value.get("type"), str) and value["type"]:
        if not all(isinstance(key, str) for key in value):
            raise _fail("string keys")
        return value
    raise _fail("a registered name or a mapping with a 'type' name and its arguments")


def _spec_list(value: object) -> list:
    if not isinstance(value, list):
        raise _fail("a list of registered names or {type: ...} mappings")
    return value


def _non_empty_list(value: object) -> list:
    if not isinstance(value, list) or not value:
        raise _fail("a non-empty list")
    return value


def _clip(value: object) -> object:
    if value is None:
        return None
    try:
        if isinstance(value, bool) or not isinstance(value, str | numbers.Real):
            raise TypeError(value)
        clipping.get(value)
    except (TypeError, ValueError):
        raise _fail(
            "null, a positive number (global norm) or 'value:V', 'norm:N', "
            "'global_norm:N', 'adaptive:C'"
        ) from None
    return value


Bool = Annotated[bool, BeforeValidator(_boolean)]
Spec = Annotated[Any, BeforeValidator(_spec)]
SpecList = Annotated[list[Spec], BeforeValidator(_spec_list)]
RunName = _string(
    lambda s: all(c.isalnum() or c in "._-" for c in s) and not s.startswith("."),
    "a run name of letters, digits, '.', '_' or '-' (not starting with '.')",
)


class _Strict(pydantic.BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


# ---------------------------------------------------------------- the schemas


def _existing_file(value: object) -> str | None:
    if value is not None and (not isinstance(value, str) or not Path(value).is_file()):
        raise _fail("an existing .csv, .npy or .npz file")
    return value


def _target(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _fail("a column name or index")
    return value


class _SourceData(_Strict):
    """A bundled data set by name, or the user's file with a target column."""

    path: Annotated[str | None, BeforeValidator(_existing_file)] = None
    target: Annotated[Any, BeforeValidator(_target)] = -1
    standardize: Bool = True

    @pydantic.model_validator(mode="after")
    def _one_source(self) -> _SourceData:
        if self.dataset is not None and self.path is not None:
            raise PydanticCustomError(
                "tfcraft_source", "expected either `dataset` or `path`, not both"
            )
        if self.dataset is None and self.path is None:
            raise PydanticCustomError(
                "tfcraft_source", "expected `dataset` (a bundled set) or `path` (a file)"
            )
        return self


class TabularData(_SourceData):
    """Where the rows come from and how they are split and scaled.

    `dataset` names a bundled set (`tfcraft.datasets.REGRESSION_SETS` or
    `CLASSIFICATION_SETS`); `path` a user's `.csv` (target column by name or
    index), `.npy` (2-D, target column by index) or `.npz` (arrays `x`, `y`).
    `validation_fraction` of the training rows is held out for validation
    logs and for calibrating the predictive uncertainty.
    """

    dataset: _optional_choice(*REGRESSION_SETS, *CLASSIFICATION_SETS) = None
    task: _choice("auto", "regression", "classification") = "auto"
    test_fraction: _number(0.0, 1.0) = 0.2
    validation_fraction: _number(0.0, 1.0, "left") = 0.2


class ModelConfig(_Strict):
    """A stack of layers by registered name: `[{type: Linear, units: 64}, ...]`."""

    layers: Annotated[list[Spec], BeforeValidator(_non_empty_list)]


class TrainerOptions(_Strict):
    """Options of `tfcraft.training.Trainer.fit`."""

    epochs: _integer(1) = 20
    batch_size: _integer(1) = 32
    accumulate_steps: _integer(1) = 1
    checkpoint_every: _integer(1, optional=True) = None
    max_to_keep: _integer(1) = 3
    nan_policy: _choice("raise", "skip") = "raise"
    early_stopping_patience: _integer(1, optional=True) = None
    jit_compile: Annotated[Any, BeforeValidator(lambda v: _jit(v))] = "auto"


def _jit(value: object) -> object:
    if value not in (True, False, "auto"):
        raise _fail("true, false or 'auto'")
    return value


class PredictOptions(_Strict):
    """How predictive uncertainty is computed (probabilistic models only)."""

    num_samples: _integer(1) = 50
    level: _number(0.0, 1.0) = 0.9
    calibrate: Bool = True


class TrainConfig(_Strict):
    """`tfcraft train`: data, model, loss, metrics, optimizer, clipping, trainer options."""

    name: RunName | None = None
    seed: _integer(0) = 0
    data: TabularData = TabularData(dataset="diabetes")
    model: ModelConfig
    loss: Spec = "mse"
    metrics: SpecList = Field(default_factory=list)
    optimizer: Spec = "adam"
    clip: Annotated[Any, BeforeValidator(_clip)] = None
    trainer: TrainerOptions = TrainerOptions()
    predict: PredictOptions = PredictOptions()
    run: dict[str, Any] | None = None  # written by tfcraft (versions); ignored when read


class OutlierData(_SourceData):
    """A bundled outlier set (`tfcraft.datasets.OUTLIER_SETS`) or a file with 0/1 labels."""

    dataset: _optional_choice(*OUTLIER_SETS) = None
    test_fraction: _number(0.0, 1.0) = 0.4


class DetectConfig(_Strict):
    """`tfcraft detect`: fit a detector without labels, evaluate with them."""

    name: RunName | None = None
    seed: _integer(0) = 0
    data: OutlierData = OutlierData(dataset="breastw")
    detector: Spec = "GaussianMixtureDetector"
    fpr: _number(0.0, 1.0) = 0.05
    run: dict[str, Any] | None = None


class RLConfig(_Strict):
    """`tfcraft rl`: an agent on a Gymnasium environment, with an optional custom reward."""

    name: RunName | None = None
    seed: _integer(0) = 0
    env: _string(what="a Gymnasium environment id") = "CartPole-v1"
    agent: Spec = "PPO"
    n_envs: _integer(1) = 4
    total_timesteps: _integer(1) = 50_000
    reward: Spec | None = None
    eval_episodes: _integer(1) = 10
    run: dict[str, Any] | None = None


SCHEMAS.update({"train": TrainConfig, "detect": DetectConfig, "rl": RLConfig})


# ---------------------------------------------------------------- error text


def _location(loc: Sequence) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not str(part).startswith("function-"):  # pydantic's validator frames
            text += ("." if text else "") + str(part)
    return text or "(top level)"


def _show(value: object) -> str:
    if isinstance(value, dict | list):
        text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
        return text if len(text) <= 80 else text[:77] + "..."
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _fields_at(schema: type, loc: Sequence) -> list[str]:
    """Field names of the nested schema at `loc` (for 'unknown key' messages)."""
    for part in loc:
        field = schema.model_fields.get(part) if isinstance(part, str) else None
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel)):
            return []
        schema = annotation
    return list(schema.model_fields)


def _message(schema: type, error: dict) -> str:
    loc = error["loc"]
    where = _location(loc)
    kind = error["type"]
    if kind == "tfcraft_source":
        return f"{where}: {error['msg']}"
    if kind == "tfcraft_expected":
        return f"{where}: {error['msg']}, got {_show(error['input'])}"
    if kind == "extra_forbidden":
        allowed = _fields_at(schema, loc[:-1])
        hint = f" (expected one of: {', '.join(allowed)})" if allowed else ""
        return f"{where}: unknown key{hint}"
    if kind == "missing":
        return f"{where}: required key is missing"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"{where}: expected a mapping, got {_show(error['input'])}"
    if kind == "list_type":
        return f"{where}: expected a list, got {_show(error['input'])}"
    return f"{where}: {error['msg']}, got {_show(error.get('input'))}"


# ---------------------------------------------------------------- loading


def validate(data: object, kind: str = "train") -> Any:
    """Validate a mapping against the schema of command `kind`; raise `ConfigError`.

    Example:

    >>> validate({"env": "CartPole-v1", "total_timesteps": 100}, kind="rl").agent
    'PPO'
    """
    schema = SCHEMAS.get(kind)
    if schema is None:
        raise ValueError(f"Argument `kind` must be one of {sorted(SCHEMAS)}. Received: {kind!r}")
    if not isinstance(data, dict):
        raise ConfigError(f"(top level): expected a mapping of keys, got {_show(data)}")
    bad_keys = [key for key in data if not isinstance(key, str)]
    if bad_keys:
        raise ConfigError(f"(top level): expected string keys, got {_show(bad_keys[0])}")
    try:
        return schema.model_validate(data)
    except pydantic.ValidationError as error:
        raise ConfigError([_message(schema, e) for e in error.errors()]) from None


def parse_override(text: str) -> tuple[list[str | int], object]:
    """Split `key.path=value`; the value is parsed as YAML (`3` int, `1e-3` float, `x` str).

    Example:

    >>> parse_override("model.layers.0.units=32")
    (['model', 'layers', 0, 'units'], 32)
    """
    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ConfigError(f"--set: expected key.path=value, got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw  # not YAML: keep the text as a string
    if isinstance(value, str):
        # YAML 1.1 reads `1e-3` as text; a user who types it means the number.
        with contextlib.suppress(ValueError):
            value = float(value)
    return [int(p) if p.isdigit() else p for p in parts], value


def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    """Return a copy of `data` with each `key.path=value` override applied.

    Example:

    >>> apply_overrides({"trainer": {"epochs": 5}}, ["trainer.epochs=1", "seed=3"])
    {'trainer': {'epochs': 1}, 'seed': 3}
    """
    import copy

    data = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node: Any = data
        for depth, part in enumerate(path[:-1]):
            if isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            elif isinstance(node, dict):
                node = node.setdefault(part, {})
            else:
                where = ".".join(map(str, path[: depth + 1]))
                raise ConfigError(f"--set {text}: {where} is not a mapping or list index")
        last = path[-1]
        if (isinstance(node, list) and isinstance(last, int) and last < len(node)) or isinstance(
            node, dict
        ):
            node[last] = value
        else:
            raise ConfigError(f"--set {text}: cannot set {'.'.join(map(str, path))}")
    return data


def bundled_configs() -> list[str]:
    """Names of the configs shipped inside the package (`tfcraft/configs/*.yaml`).

    They are package data, so they are there in a wheel install too; the
    repository's `configs/` folder links to the same files.

    Example:

    >>> "bnn_regression" in bundled_configs()
    True
    """
    folder = importlib.resources.files("tfcraft") / "configs"
    return sorted(
        entry.name[: -len(".yaml")] for entry in folder.iterdir() if entry.name.endswith(".yaml")
    )


def bundled_config(name: str) -> Path:
    """The path of bundled config `name` (`"bnn_regression"` or `"bnn_regression.yaml"`).

    Example:

    >>> bundled_config("rl_cartpole").name
    'rl_cartpole.yaml'
    """
    stem = name[: -len(".yaml")] if name.endswith(".yaml") else name
    if stem not in bundled_configs():
        raise ConfigError(
            f"{name}: no such bundled config (expected one of: {', '.join(bundled_configs())})"
        )
    return Path(str(importlib.resources.files("tfcraft") / "configs" / f"{stem}.yaml"))


def resolve_config_path(path: str | os.PathLike) -> Path:
    """`path` if it is a file, else the bundled config of that bare name (no folder part).

    So `tfcraft train bnn_regression` works from any folder and from a wheel install,
    and `tfcraft train configs/bnn_regression.yaml` from a clone.
    """
    path = Path(path)
    if path.is_file() or path.parent != Path("."):
        return path
    stem = path.name[: -len(".yaml")] if path.name.endswith(".yaml") else path.name
    return bundled_config(stem) if stem in bundled_configs() else path


def read_yaml(path: str | os.PathLike) -> object:
    """Parse a YAML file (safe loader: plain data only), with a clear error on failure."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"{path}: config file not found (bundled configs, usable by name: "
            f"{', '.join(bundled_configs())})"
        )
    try:
        text = path.read_text(encoding="utf-8")
        return yaml.safe_load(text)
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text (UTF-8) file") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None


def load_config(path: str | os.PathLike, kind: str = "train", overrides: Sequence[str] = ()) -> Any:
    """Read, override and validate a config file; every problem prefixed with the file name.

    `path` may also be the bare name of a bundled config (`bundled_configs()`).

    Raises:
        ConfigError: unreadable file, invalid YAML or a schema violation.
    """
    shown, path = path, resolve_config_path(path)
    data = read_yaml(path)
    if data is None:
        data = {}
    if isinstance(data, dict):
        data = apply_overrides(data, overrides)
    try:
        config = validate(data, kind)
    except ConfigError as error:
        raise ConfigError([f"{shown}: {problem}" for problem in error.problems]) from None
    if config.name is None:
        config.name = Path(path).stem if Path(path).stem != "config" else Path(path).parent.name
    return config


def dump_yaml(config: pydantic.BaseModel, extra: dict | None = None) -> str:
    """The resolved config as YAML text (every default filled in), plus `extra` keys."""
    data = config.model_dump(mode="json")
    if extra:
        data.update(extra)
    return yaml.safe_dump(data, sort_keys=False)
