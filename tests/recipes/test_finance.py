import numpy as np
import pytest

from tfcraft.recipes import finance


def _returns(n=420, seed=0):
    return np.random.default_rng(seed).standard_t(5, size=n)


def test_lagged_features_match_a_loop():
    r = _returns()
    days = np.array([66, 100, 419])
    features = finance.lagged_features(r, days)
    for row, t in zip(features, days, strict=True):
        expected = [r[t - 1]] + [np.log(np.mean(r[t - w : t] ** 2) + 1e-4) for w in (1, 5, 22, 66)]
        np.testing.assert_allclose(row, expected, rtol=1e-5)


def test_historical_simulation_matches_numpy():
    r = _returns()
    var, es = finance.historical_simulation(r, 300, 302, window=250)
    past = r[51:301]
    assert var[1, 0] == pytest.approx(-np.quantile(past, 0.01))
    assert es[1, 1] == pytest.approx(-past[past <= np.quantile(past, 0.05)].mean())


@pytest.mark.parametrize("model", ["student_t", "quantile"])
def test_walk_forward_never_looks_ahead(model):
    r = _returns()
    kwargs = dict(model=model, window=200, refit_every=20, epochs=3, warm_epochs=1, seed=0)
    base = finance.walk_forward(r, 300, 360, **kwargs)
    changed = r.copy()
    t = 330
    changed[t:] = changed[t:] * 10 + 5  # the future is wildly different
    other = finance.walk_forward(changed, 300, 360, **kwargs)
    np.testing.assert_array_equal(base["var"][: t - 300 + 1], other["var"][: t - 300 + 1])
    np.testing.assert_array_equal(base["es"][: t - 300 + 1], other["es"][: t - 300 + 1])
    assert not np.array_equal(base["var"][t - 300 + 1 :], other["var"][t - 300 + 1 :])
    assert np.all(base["es"] >= base["var"] - 1e-9)  # ES beyond VaR
    assert base["var"].shape == (60, 2)


def test_bad_inputs():
    r = _returns()
    with pytest.raises(ValueError, match=r"66 earlier returns.*Received: day=10"):
        finance.lagged_features(r, [10])
    with pytest.raises(ValueError, match=r"at least 166 earlier returns.*Received: start=100"):
        finance.walk_forward(r, 100, 120)
    with pytest.raises(ValueError, match=r"Received: level=1.5"):
        finance.walk_forward(r, 300, 320, levels=(1.5,))
    with pytest.raises(ValueError, match=r"Received: model='garch'"):
        finance.walk_forward(r, 300, 320, model="garch")
    with pytest.raises(ValueError, match=r"Received: dataset='nasdaq'"):
        finance.run("nasdaq")
    with pytest.raises(ValueError, match=r"finite.*Received: 1 non-finite"):
        finance.walk_forward(np.append(r, np.nan), 300, 320)


def test_non_finite_model_output_is_reported():
    forecaster = finance._Forecaster("student_t", 200, 1, 1, 0)
    r = _returns()
    forecaster.fit(r, 300)
    forecaster.model.set_weights([np.full_like(w, np.nan) for w in forecaster.model.get_weights()])
    with pytest.raises(ValueError, match=r"non-finite parameters on days \[300"):
        forecaster.outputs(r, np.arange(300, 305))


def test_student_t_risk_matches_tfcraft_bayes_at_per_row_levels():
    import tensorflow_probability as tfp

    from tfcraft.bayes import expected_shortfall, value_at_risk

    rng = np.random.default_rng(3)
    params = rng.normal(size=(6, 3))
    var, es = finance.student_t_risk(params, 0.1, 2.0, [[0.01, 0.05]] * 3 + [[0.002, 0.3]] * 3)
    softplus = np.logaddexp(0.0, params[:, 1:])
    dist = tfp.distributions.StudentT(
        2.0 + softplus[:, 1], params[:, 0] * 2.0 + 0.1, softplus[:, 0] * 2.0
    )
    for rows, levels in ((slice(0, 3), (0.01, 0.05)), (slice(3, 6), (0.002, 0.3))):
        for column, level in enumerate(levels):
            np.testing.assert_allclose(
                var[rows, column], value_at_risk(dist, level)[rows], rtol=1e-5
            )
            np.testing.assert_allclose(
                es[rows, column], expected_shortfall(dist, level)[rows], rtol=1e-4
            )


def test_quantile_risk_interpolates_the_grid_and_integrates_below_the_level():
    rng = np.random.default_rng(4)
    q = np.sort(rng.normal(-2.0, 1.0, size=(5, len(finance.QUANTILE_GRID))), axis=1)
    grid = np.asarray(finance.QUANTILE_GRID)
    var, es = finance.quantile_risk(q, [[0.01, 0.05, 0.0375]])
    np.testing.assert_allclose(var[:, 0], -q[:, 2])  # on the grid: the predicted quantile
    np.testing.assert_allclose(var[:, 2], -(q[:, 3] + q[:, 4]) / 2)  # halfway: linear
    for column, level in ((0, 0.01), (1, 0.05)):  # ES: the quantile function's mean below
        u = np.linspace(0.0, level, 200_001)
        qf = np.array([np.interp(u, grid, row, left=row[0]) for row in q])
        np.testing.assert_allclose(es[:, column], -qf.mean(axis=1), rtol=1e-4)
    with pytest.raises(ValueError, match=r"Received: level=0.1"):
        finance.quantile_risk(q, [[0.1]])


def test_adaptive_level_reacts_to_breaches_and_never_looks_ahead():
    r = _returns(520)
    kwargs = dict(window=200, refit_every=20, epochs=3, warm_epochs=1, seed=0)
    fixed = finance.walk_forward(r, 300, 520, adaptation_rate=None, **kwargs)
    adapted = finance.walk_forward(r, 300, 520, **kwargs)
    hits = r[300:520, None] < -adapted["var"]
    # Same model, other levels: day 0 uses p itself; each calm day raises the level by
    # g p (a VaR slightly nearer); a breach lowers it by g (1 - p) (VaR further out).
    first = int(np.argmax(hits[:, 0]))
    assert hits[:, 0].any() and first < 99
    assert adapted["var"][0, 0] == pytest.approx(fixed["var"][0, 0], rel=1e-6)
    assert np.all(adapted["var"][1 : first + 1, 0] < fixed["var"][1 : first + 1, 0])
    assert adapted["var"][first + 1, 0] > fixed["var"][first + 1, 0]
    changed = r.copy()
    changed[400:] = changed[400:] * 10
    other = finance.walk_forward(changed, 300, 520, **kwargs)
    np.testing.assert_array_equal(other["var"][:101], adapted["var"][:101])
    with pytest.raises(ValueError, match=r"Received: adaptation_rate=0"):
        finance.walk_forward(r, 300, 320, adaptation_rate=0.0)
