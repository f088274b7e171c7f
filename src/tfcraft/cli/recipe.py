"""`tfcraft recipe healthcare|finance`: run a `tfcraft.recipes` recipe into a run directory.

`--set key=value` passes a keyword argument of the recipe's `run` (value parsed
as YAML), which is how a budget smaller than `quick` is chosen, e.g.
`--set models=[deterministic]` (healthcare) or `--set models=[student_t]
--set start=2018-09-01` (finance: forecasts from that date on). Unknown keys
and unknown model names are refused before any work (`ConfigError`, exit 2).

Example:

>>> recipe_options("finance", ["models=[student_t]", "start=2018-09-01"])
{'models': ('student_t',), 'start': '2018-09-01'}
"""

from __future__ import annotations

import datetime
import importlib
import inspect
from collections.abc import Sequence
from pathlib import Path

import yaml

from tfcraft.config import ConfigError, parse_override
from tfcraft.reports import build_report
from tfcraft.runs import RunDirectory, versions

__all__ = ["RECIPES", "recipe", "recipe_options"]

RECIPES = ("healthcare", "finance")
_SET_BY_FLAGS = ("quick", "out", "seed")  # --full, --out, --seed


def _module(name: str):
    if name not in RECIPES:
        raise ConfigError(f"recipe: expected one of {', '.join(RECIPES)}, got {name!r}")
    return importlib.import_module(f"tfcraft.recipes.{name}")


def _plain(value):
    """YAML values as the recipes take them: lists as tuples, dates as ISO text."""
    if isinstance(value, list):
        return tuple(_plain(v) for v in value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


def recipe_options(name: str, overrides: Sequence[str]) -> dict:
    """Check `--set key=value` options against the keyword arguments of the recipe's `run`."""
    module = _module(name)
    allowed = [p for p in inspect.signature(module.run).parameters if p not in _SET_BY_FLAGS]
    options = {}
    for text in overrides:
        keys, value = parse_override(text)
        key = ".".join(map(str, keys))
        if key not in allowed:
            raise ConfigError(
                f"recipe {name}: --set {key}: unknown option (expected one of: "
                f"{', '.join(allowed)}; --full, --seed and --out are flags)"
            )
        options[key] = _plain(value)
    if "models" in options:
        models = options["models"]
        models = (models,) if isinstance(models, str) else models
        unknown = [m for m in models if m not in module.MODELS]
        if not models or unknown:
            raise ConfigError(
                f"recipe {name}: models: expected a non-empty list of "
                f"{', '.join(module.MODELS)}, got {options['models']!r}"
            )
        options["models"] = tuple(models)
    return options


def recipe(
    name: str,
    out: str | Path,
    *,
    quick: bool = True,
    seed: int = 0,
    options: dict | None = None,
) -> dict:
    """Run recipe `name` (its `run(quick=..., out=..., seed=..., **options)`); write the report.

    The run directory gets `config.yaml` (recipe, budget, options, versions),
    `plots/*.png` (the recipe's figures), `results.json` and `report.html`.
    """
    module = _module(name)
    options = dict(options or {})
    with RunDirectory.open(out) as run:
        resolved = {
            "recipe": name,
            "quick": bool(quick),
            "seed": int(seed),
            "options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
            "run": {"versions": versions(), "seed": int(seed)},
        }
        run.write_text("config.yaml", yaml.safe_dump(resolved, sort_keys=False))
        result = module.run(quick=quick, out=run.path, seed=seed, **options)
        results = {
            "title": f"tfcraft recipe: {result.name}",
            "kind": "recipe",
            "summary": result.summary,
            "metrics": {},
            "tables": result.tables,
            "figures": {k: str(v) for k, v in result.figures.items()},
        }
        run.write_json("results.json", results)
        results["report"] = str(build_report(run.path))
    return results
