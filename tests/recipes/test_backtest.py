import itertools
import math

import numpy as np
import pytest
from scipy import stats

from tfcraft.recipes import backtest


def test_kupiec_worked_example():
    # T = 250 days, 5 violations of a 1% VaR (Jorion's textbook case): LR_uc 1.9568, p 0.1618.
    hits = np.zeros(250, bool)
    hits[[10, 50, 90, 130, 170]] = True
    result = backtest.kupiec_test(hits, 0.01)
    assert result["statistic"] == pytest.approx(1.9568, abs=5e-5)
    assert result["p_value"] == pytest.approx(0.1618, abs=1e-4)
    assert result["violations"] == 5 and result["rate"] == 0.02
    # No violations: LR_uc = -2 T log(1 - p).
    assert backtest.kupiec_test(np.zeros(250, bool), 0.01)["statistic"] == pytest.approx(
        -2 * 250 * math.log(0.99)
    )


def _christoffersen_by_hand(hits):
    counts = {(i, j): 0 for i in (0, 1) for j in (0, 1)}
    for previous, current in itertools.pairwise(hits):
        counts[(int(previous), int(current))] += 1
    n00, n01, n10, n11 = counts[(0, 0)], counts[(0, 1)], counts[(1, 0)], counts[(1, 1)]
    pi0, pi1 = n01 / (n00 + n01), n11 / (n10 + n11)
    pi = (n01 + n11) / (n00 + n01 + n10 + n11)
    null = (1 - pi) ** (n00 + n10) * pi ** (n01 + n11)
    alternative = (1 - pi0) ** n00 * pi0**n01 * (1 - pi1) ** n10 * pi1**n11
    return -2 * math.log(null / alternative)


def test_christoffersen_matches_the_textbook_formula():
    rng = np.random.default_rng(0)
    hits = rng.uniform(size=300) < 0.05
    hits[[100, 101, 102, 200, 201]] = True  # clustered violations
    result = backtest.christoffersen_test(hits, 0.05)
    expected = _christoffersen_by_hand(hits)
    assert result["independence"] == pytest.approx(expected, rel=1e-9)
    assert result["independence_p_value"] == pytest.approx(stats.chi2.sf(expected, 1))
    uc = backtest.kupiec_test(hits, 0.05)["statistic"]
    assert result["conditional_coverage"] == pytest.approx(uc + expected)
    assert result["conditional_coverage_p_value"] == pytest.approx(stats.chi2.sf(uc + expected, 2))
    assert result["n11"] == int(np.sum(hits[:-1] & hits[1:]))


def test_losses_match_plain_loops():
    rng = np.random.default_rng(1)
    returns = rng.standard_t(4, size=200)
    var = np.full(200, 1.8) + rng.uniform(size=200)
    es = var + 0.7
    level = 0.05
    pinball = np.mean([(level - (r < -v)) * (r + v) for r, v in zip(returns, var, strict=True)])
    assert backtest.pinball_loss(returns, var, level) == pytest.approx(pinball)
    fz0 = np.mean(
        [
            -float(r <= -v) * (-v - r) / (level * -e) + (-v) / (-e) + math.log(e) - 1
            for r, v, e in zip(returns, var, es, strict=True)
        ]
    )
    assert backtest.fz0_loss(returns, var, es, level) == pytest.approx(fz0)
    row = backtest.backtest(returns, var, es, level)
    assert row["violations"] == int(np.sum(returns < -var))
    assert row["kupiec_pass"] == (row["kupiec_p"] > 0.05)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"Received: level=1.0"):
        backtest.kupiec_test([True, False], 1.0)
    with pytest.raises(ValueError, match=r"Received: level=-0.1"):
        backtest.pinball_loss([1.0], [1.0], -0.1)
    with pytest.raises(ValueError, match=r"Received: 2 returns, 1 VaR forecasts"):
        backtest.violations([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match=r"Received: returns of size 2 with 1 non-finite"):
        backtest.violations([1.0, np.nan], [1.0, 1.0])
    with pytest.raises(
        ValueError, match=r"positive expected-shortfall.*Received: es with minimum -1.0"
    ):
        backtest.fz0_loss([1.0], [1.0], [-1.0], 0.05)
