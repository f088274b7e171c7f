import numpy as np
import pytest
import tensorflow_probability as tfp
from scipy import integrate, stats

from tfcraft import bayes

tfd = tfp.distributions


def _numerical_es(pdf, cdf_inverse, level):
    q = cdf_inverse(level)
    tail, _ = integrate.quad(lambda x: x * pdf(x), -np.inf, q, limit=200)
    return -tail / level


@pytest.mark.parametrize("level", [0.01, 0.05, 0.2])
@pytest.mark.parametrize(
    ("df", "loc", "scale"), [(3.0, 0.1, 1.5), (5.0, -0.2, 0.7), (30.0, 0.0, 1.0)]
)
def test_student_t_es_matches_numerical_integration(df, loc, scale, level):
    dist = tfd.StudentT(np.float64(df), np.float64(loc), np.float64(scale))
    reference = stats.t(df, loc, scale)
    expected = _numerical_es(reference.pdf, reference.ppf, level)
    assert float(bayes.expected_shortfall(dist, level)) == pytest.approx(expected, rel=1e-7)
    assert float(bayes.value_at_risk(dist, level)) == pytest.approx(-reference.ppf(level), rel=1e-6)


def test_mixture_quantile_and_es_match_numerical_integration():
    weights = np.array([0.3, 0.7])
    locs, scales, dfs = np.array([-1.0, 0.5]), np.array([2.0, 0.8]), np.array([4.0, 8.0])
    mixture = tfd.MixtureSameFamily(tfd.Categorical(probs=weights), tfd.StudentT(dfs, locs, scales))
    parts = [stats.t(d, m, s) for d, m, s in zip(dfs, locs, scales, strict=True)]

    def pdf(x):
        return sum(w * p.pdf(x) for w, p in zip(weights, parts, strict=True))

    def cdf(x):
        return sum(w * p.cdf(x) for w, p in zip(weights, parts, strict=True))

    from scipy.optimize import brentq

    level = 0.025
    q = brentq(lambda x: cdf(x) - level, -100, 100, xtol=1e-12)
    assert float(bayes.lower_quantile(mixture, level)) == pytest.approx(q, abs=1e-8)
    tail, _ = integrate.quad(lambda x: x * pdf(x), -np.inf, q)
    assert float(bayes.expected_shortfall(mixture, level)) == pytest.approx(-tail / level, rel=1e-6)


def test_normal_closed_form_and_batch_shapes():
    dist = tfd.Normal(np.array([0.0, 1.0]), np.array([1.0, 2.0]))
    z = stats.norm.ppf(0.05)
    np.testing.assert_allclose(
        bayes.expected_shortfall(dist, 0.05),
        -(np.array([0.0, 1.0]) - np.array([1.0, 2.0]) * stats.norm.pdf(z) / 0.05),
    )


def test_predictive_of_a_student_t_head():
    # Two passes, one row, one target; raw parameters as the head outputs them.
    params = np.array([[[0.0, 0.5, 1.0]], [[1.0, 0.2, 3.0]]])
    dist = bayes.Predictive(
        samples=np.zeros((2, 1, 1)), variances=np.ones((2, 1, 1)), family="student_t", params=params
    )
    softplus = np.log1p(np.exp(params[..., 1:]))
    parts = [stats.t(2 + softplus[i, 0, 1], params[i, 0, 0], softplus[i, 0, 0]) for i in range(2)]
    level = 0.05

    def cdf(x):
        return 0.5 * (parts[0].cdf(x) + parts[1].cdf(x))

    from scipy.optimize import brentq

    q = brentq(lambda x: cdf(x) - level, -100, 100, xtol=1e-12)
    tail = sum(0.5 * integrate.quad(lambda x, p=p: x * p.pdf(x), -np.inf, q)[0] for p in parts)
    assert bayes.value_at_risk(dist, level).shape == (1,)
    assert float(bayes.value_at_risk(dist, level)[0]) == pytest.approx(-q, abs=1e-5)
    assert float(bayes.expected_shortfall(dist, level)[0]) == pytest.approx(-tail / level, rel=1e-4)


def test_bad_inputs():
    t = tfd.StudentT(5.0, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"Received: level=1.2"):
        bayes.value_at_risk(t, 1.2)
    with pytest.raises(ValueError, match=r"Received: level=0.0"):
        bayes.expected_shortfall(t, 0.0)
    with pytest.raises(ValueError, match=r"non-finite parameters: `loc`.*Received: loc=nan"):
        bayes.value_at_risk(tfd.Normal([0.0, np.nan], 1.0), 0.05)
    with pytest.raises(ValueError, match=r"df > 1.*Received: min df=0.5"):
        bayes.expected_shortfall(tfd.StudentT(0.5, 0.0, 1.0), 0.05)
    with pytest.raises(TypeError, match=r"Received: distribution=.*Laplace"):
        bayes.value_at_risk(tfd.Laplace(0.0, 1.0), 0.05)
    with pytest.raises(ValueError, match=r"Received: family='categorical'"):
        bayes.value_at_risk(
            bayes.Predictive(
                samples=np.ones((1, 1, 2)) / 2,
                variances=np.zeros((1, 1, 2)),
                family="categorical",
                params=np.zeros((1, 1, 2)),
            ),
            0.05,
        )


def test_one_level_per_forecast_equals_each_scalar_level():
    t = tfp.distributions.StudentT(df=[3.0, 5.0, 9.0], loc=[0.0, 0.1, -0.2], scale=[1.0, 2.0, 0.5])
    levels = np.array([0.01, 0.05, 0.002])
    var, es = bayes.value_at_risk(t, levels), bayes.expected_shortfall(t, levels)
    for i, level in enumerate(levels):
        assert var[i] == pytest.approx(bayes.value_at_risk(t, float(level))[i], rel=1e-12)
        assert es[i] == pytest.approx(bayes.expected_shortfall(t, float(level))[i], rel=1e-12)
    with pytest.raises(ValueError, match=r"Received: level=1.5"):
        bayes.value_at_risk(t, np.array([0.01, 1.5, 0.05]))
