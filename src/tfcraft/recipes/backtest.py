"""Value-at-Risk backtests: violation rate, Kupiec, Christoffersen, pinball and FZ0 losses.

A *violation* on day `t` is a return below the forecast lower quantile
`-VaR_t`. At tail probability `p`, correct forecasts violate independently
with probability `p`:

- Kupiec's proportion-of-failures test (1995) compares the violation rate
  with `p`: `LR_uc = -2 log[(1-p)^(T-x) p^x / ((1-x/T)^(T-x) (x/T)^x)]`, chi-squared
  with 1 degree of freedom.
- Christoffersen's independence test (1998) compares a first-order Markov
  chain of violations with independent ones (`LR_ind`, 1 df); conditional
  coverage is `LR_cc = LR_uc + LR_ind` (2 df).

Losses that rank forecasts (lower is better): the pinball (quantile) loss of
the VaR, and the FZ0 loss of Patton, Ziegel & Chen (2019), a strictly
consistent scoring function of VaR and ES jointly (Fissler & Ziegel 2016).

Example:

>>> result = kupiec_test(np.array([True] * 5 + [False] * 245), 0.01)
>>> round(result["statistic"], 4), round(result["p_value"], 3)
(1.9568, 0.162)
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special, stats

from tfcraft._validation import check_float_in_range

__all__ = [
    "backtest",
    "christoffersen_test",
    "fz0_loss",
    "kupiec_test",
    "pinball_loss",
    "violations",
]


def _xlogy(x, y) -> float:
    return float(special.xlogy(x, y))


def _vector(name: str, values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0 or not np.all(np.isfinite(array)):
        raise ValueError(
            f"`{name}` must be a non-empty array of finite numbers. "
            f"Received: {name} of size {array.size} with "
            f"{int(np.sum(~np.isfinite(array)))} non-finite values"
        )
    return array


def violations(returns, var) -> np.ndarray:
    """Boolean days on which the return fell below `-var` (VaR as a positive loss).

    Example:

    >>> violations([-3.0, 1.0, -1.0], [2.0, 2.0, 2.0]).tolist()
    [True, False, False]
    """
    returns, var = _vector("returns", returns), _vector("var", var)
    if returns.shape != var.shape:
        raise ValueError(
            "`returns` and `var` must have the same length. "
            f"Received: {returns.size} returns, {var.size} VaR forecasts"
        )
    return returns < -var


def kupiec_test(hits, level: float) -> dict[str, float]:
    """Kupiec's proportion-of-failures likelihood-ratio test.

    Args:
        hits: Boolean violations, `(T,)`.
        level: The VaR's tail probability `p` in (0, 1).

    Returns:
        `{"violations", "days", "rate", "statistic", "p_value"}`.
    """
    level = check_float_in_range("level", level, 0.0, 1.0)
    hits = np.asarray(hits, dtype=bool).reshape(-1)
    days, count = hits.size, int(hits.sum())
    rate = count / days
    log_null = _xlogy(days - count, 1.0 - level) + _xlogy(count, level)
    log_alternative = _xlogy(days - count, 1.0 - rate) + _xlogy(count, rate)
    statistic = max(-2.0 * (log_null - log_alternative), 0.0)
    return {
        "violations": count,
        "days": days,
        "rate": rate,
        "statistic": statistic,
        "p_value": float(stats.chi2.sf(statistic, 1)),
    }


def christoffersen_test(hits, level: float) -> dict[str, float]:
    """Christoffersen's independence and conditional-coverage tests.

    Example:

    >>> hits = np.array([False] * 95 + [True] * 5)  # five violations in a row
    >>> round(christoffersen_test(hits, 0.05)["independence_p_value"], 6)
    0.0

    Args:
        hits: Boolean violations, `(T,)`.
        level: The VaR's tail probability in (0, 1).

    Returns:
        `{"independence", "independence_p_value", "conditional_coverage",
        "conditional_coverage_p_value"}` and the transition counts `n00`,
        `n01`, `n10`, `n11` (`nij`: day `t-1` in state `i`, day `t` in `j`).
    """
    uc = kupiec_test(hits, level)
    hits = np.asarray(hits, dtype=bool).reshape(-1)
    previous, current = hits[:-1], hits[1:]
    n00 = int(np.sum(~previous & ~current))
    n01 = int(np.sum(~previous & current))
    n10 = int(np.sum(previous & ~current))
    n11 = int(np.sum(previous & current))
    pi0 = n01 / max(n00 + n01, 1)
    pi1 = n11 / max(n10 + n11, 1)
    pi = (n01 + n11) / max(n00 + n01 + n10 + n11, 1)
    log_null = _xlogy(n00 + n10, 1.0 - pi) + _xlogy(n01 + n11, pi)
    log_alternative = (
        _xlogy(n00, 1.0 - pi0) + _xlogy(n01, pi0) + _xlogy(n10, 1.0 - pi1) + _xlogy(n11, pi1)
    )
    independence = max(-2.0 * (log_null - log_alternative), 0.0)
    conditional = uc["statistic"] + independence
    return {
        "independence": independence,
        "independence_p_value": float(stats.chi2.sf(independence, 1)),
        "conditional_coverage": conditional,
        "conditional_coverage_p_value": float(stats.chi2.sf(conditional, 2)),
        "n00": n00,
        "n01": n01,
        "n10": n10,
        "n11": n11,
    }


def pinball_loss(returns, var, level: float) -> float:
    """Mean pinball loss of the lower quantile `-var` at `level` (lower is better).

    Example:

    >>> pinball_loss([-3.0, 1.0], [2.0, 2.0], 0.05)  # (0.95 * 1 + 0.05 * 3) / 2
    0.55
    """
    level = check_float_in_range("level", level, 0.0, 1.0)
    returns, quantile = _vector("returns", returns), -_vector("var", var)
    hits = (returns < quantile).astype(np.float64)
    return float(np.mean((level - hits) * (returns - quantile)))


def fz0_loss(returns, var, es, level: float) -> float:
    """Mean FZ0 loss of VaR and ES forecasts (both positive losses, `es >= var > 0`).

    `FZ0(y, v, e) = -1{y <= v} (v - y) / (level * e) + v / e + log(-e) - 1`
    with `v = -var` and `e = -es` the forecast quantile and tail mean
    (Patton, Ziegel & Chen 2019, eq. 6); lower is better.

    Example:

    >>> round(fz0_loss([-3.0, 1.0], [2.0, 2.0], [2.5, 2.5], 0.05), 4)
    4.7163
    """
    level = check_float_in_range("level", level, 0.0, 1.0)
    returns, v, e = _vector("returns", returns), -_vector("var", var), -_vector("es", es)
    if np.any(e >= 0):
        raise ValueError(
            "FZ0 needs positive expected-shortfall losses. "
            f"Received: es with minimum {float(-e.max())!r}"
        )
    hits = (returns <= v).astype(np.float64)
    return float(np.mean(-hits * (v - returns) / (level * e) + v / e + np.log(-e) - 1.0))


def backtest(returns, var, es, level: float, significance: float = 0.05) -> dict[str, float]:
    """Every backtest of one VaR/ES forecast series in one row.

    Args:
        returns: Realised returns, `(T,)`.
        var: VaR forecasts (positive losses), `(T,)`.
        es: ES forecasts (positive losses), `(T,)`.
        level: Tail probability in (0, 1).
        significance: Test size in (0, 1). Defaults to `0.05`.

    Returns:
        Violations, rate, the three tests' statistics and p-values, whether
        Kupiec and Christoffersen (conditional coverage) pass at
        `significance`, and the pinball and FZ0 losses (FZ0 is NaN when some
        ES forecast is not a positive loss).
    """
    significance = check_float_in_range("significance", significance, 0.0, 1.0)
    hits = violations(returns, var)
    uc = kupiec_test(hits, level)
    cc = christoffersen_test(hits, level)
    return {
        "level": level,
        "days": uc["days"],
        "violations": uc["violations"],
        "rate": uc["rate"],
        "kupiec_p": uc["p_value"],
        "independence_p": cc["independence_p_value"],
        "christoffersen_p": cc["conditional_coverage_p_value"],
        "kupiec_pass": uc["p_value"] > significance,
        "christoffersen_pass": cc["conditional_coverage_p_value"] > significance,
        "pinball": pinball_loss(returns, var, level),
        # FZ0 is defined only for positive ES losses (a negative tail mean).
        "fz0": fz0_loss(returns, var, es, level) if np.all(np.asarray(es) > 0) else math.nan,
    }
