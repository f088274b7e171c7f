"""`tfcraft recipe healthcare|finance`: run a `tfcraft.recipes` recipe into a run directory."""

from __future__ import annotations

import importlib
from pathlib import Path

from tfcraft.reports import build_report
from tfcraft.runs import RunDirectory

__all__ = ["RECIPES", "recipe"]

RECIPES = ("healthcare", "finance")


def recipe(name: str, out: str | Path, *, quick: bool = True, seed: int = 0) -> dict:
    """Run recipe `name` (its `run(quick=..., out=..., seed=...)`); write results and report."""
    module = importlib.import_module(f"tfcraft.recipes.{RECIPES[RECIPES.index(name)]}")
    with RunDirectory.open(out) as run:
        result = module.run(quick=quick, out=run.path, seed=seed)
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
