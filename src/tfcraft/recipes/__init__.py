"""Domain recipes: healthcare diagnosis with abstention, financial VaR/ES with a backtest.

Each recipe's `run(...)` returns a `RecipeResult` (tables of rows, a
plain-language summary, PNG figures under `out/plots/`).

Example:

>>> from tfcraft.recipes import backtest
>>> round(backtest.kupiec_test([True] * 5 + [False] * 245, 0.01)["statistic"], 4)
1.9568
"""

from tfcraft.recipes import backtest, finance, healthcare
from tfcraft.recipes.base import RecipeResult

__all__ = ["RecipeResult", "backtest", "finance", "healthcare"]
