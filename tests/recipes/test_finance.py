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
        forecaster.predict(r, np.arange(300, 305), (0.01,))
