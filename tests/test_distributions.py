import numpy as np
import pytest
import tensorflow_probability as tfp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from tfcraft import distributions

tfd = tfp.distributions


def softplus(x):
    return np.log1p(np.exp(x)) + distributions.MIN_SCALE


@settings(max_examples=25, deadline=None)
@given(
    loc=st.floats(-5, 5),
    raw_scale=st.floats(-3, 3),
    y=st.floats(-10, 10),
)
def test_normal_family_log_prob_matches_scipy(loc, raw_scale, y):
    params = np.array([[loc, raw_scale]], np.float32)
    dist = distributions.distribution_from_params("normal", params)
    expected = stats.norm(loc, softplus(np.float32(raw_scale))).logpdf(y)
    np.testing.assert_allclose(dist.log_prob([[y]]).numpy(), [expected], rtol=2e-4, atol=2e-4)


def test_student_t_has_finite_variance_and_matches_scipy():
    params = np.array([[1.0, 0.3, -4.0]], np.float32)
    dist = distributions.distribution_from_params("student_t", params)
    df = 2.0 + np.log1p(np.exp(-4.0))
    reference = stats.t(df, loc=1.0, scale=softplus(0.3))
    np.testing.assert_allclose(dist.log_prob([[0.2]]), [reference.logpdf(0.2)], rtol=1e-4)
    np.testing.assert_allclose(dist.stddev().numpy(), [[reference.std()]], rtol=1e-4)


def test_mixture_normal_log_prob_is_log_sum_of_components():
    logits, loc, raw = [0.2, -0.5], [-1.0, 2.0], [0.1, 0.4]
    params = np.array([logits + loc + raw], np.float32)
    dist = distributions.distribution_from_params("mixture_normal", params)
    weights = np.exp(logits) / np.sum(np.exp(logits))
    y = 0.7
    density = sum(
        w * stats.norm(m, softplus(r)).pdf(y) for w, m, r in zip(weights, loc, raw, strict=True)
    )
    np.testing.assert_allclose(dist.log_prob([[y]]), [np.log(density)], rtol=1e-5)
    assert dist.event_shape.as_list() == [1]


def test_categorical_and_bernoulli_shapes():
    logits = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    categorical = distributions.distribution_from_params("categorical", logits)
    targets = distributions.reshape_targets(categorical, np.array([[0], [1], [2], [0], [1]]))
    assert targets.shape == (5,)
    expected = logits[np.arange(5), [0, 1, 2, 0, 1]] - np.log(np.exp(logits).sum(-1))
    np.testing.assert_allclose(categorical.log_prob(targets), expected, rtol=1e-5)
    bernoulli = distributions.distribution_from_params("bernoulli", logits)
    assert bernoulli.event_shape.as_list() == [3]


@pytest.mark.parametrize(
    ("family", "size", "expected"),
    [
        ("normal", 2, 4),
        ("student_t", 1, 3),
        ("bernoulli", 3, 3),
        ("categorical", 10, 10),
        ("mixture_normal", 5, 15),
    ],
)
def test_num_params(family, size, expected):
    assert distributions.num_params(family, size) == expected


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"Received: distribution='gamma'"):
        distributions.distribution_from_params("gamma", np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"divisible by 2.*params.shape=\(2, 3\)"):
        distributions.distribution_from_params("normal", np.zeros((2, 3)))
    with pytest.raises(ValueError, match="no distribution family"):
        distributions.as_distribution(np.zeros((2, 2)), None)
    dist = distributions.distribution_from_params("normal", np.zeros((4, 2), "float32"))
    with pytest.raises(ValueError, match=r"y_true.shape=\(3,\)"):
        distributions.reshape_targets(dist, np.zeros(3))


def test_as_distribution_passes_distributions_through():
    dist = tfd.Normal(0.0, 1.0)
    assert distributions.as_distribution(dist, None) is dist
