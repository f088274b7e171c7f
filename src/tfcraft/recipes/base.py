"""What every recipe returns, and how it writes its plots.

Example:

>>> result = RecipeResult("demo", {"scores": [{"model": "a", "auc": 0.9}]}, "It works.", {})
>>> result.tables["scores"][0]["auc"], result.summary
(0.9, 'It works.')
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

__all__ = ["RecipeResult", "plots_dir", "save_figure"]


@dataclasses.dataclass(frozen=True)
class RecipeResult:
    """The outcome of a recipe's `run`.

    Attributes:
        name: The recipe (`"healthcare"`, `"finance"`).
        tables: Named tables, each a list of rows (`dict`s of column -> value,
            plain Python numbers and strings), ready for a report or a DataFrame.
        summary: A plain-language paragraph on what the numbers mean.
        figures: Named PNG files written under `out/plots/` (empty without `out`).
    """

    name: str
    tables: dict[str, list[dict]]
    summary: str
    figures: dict[str, Path]


def plots_dir(out: str | os.PathLike) -> Path:
    """`out/plots/`, created if missing."""
    path = Path(out) / "plots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_figure(figure, out: str | os.PathLike, name: str) -> Path:
    """Save a matplotlib figure atomically as `out/plots/<name>.png` and close it."""
    import matplotlib.pyplot as plt

    path = plots_dir(out) / f"{name}.png"
    temporary = path.with_name(path.name + ".tmp")
    try:
        figure.savefig(temporary, format="png", dpi=110, bbox_inches="tight")
        os.replace(temporary, path)
    finally:
        plt.close(figure)
        temporary.unlink(missing_ok=True)
    return path
