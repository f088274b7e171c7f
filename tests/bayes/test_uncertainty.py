import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tfcraft import bayes


def _numpy_entropy(p):
    return -sum(pk * np.log(pk) for pk in p if pk > 0)


def test_entropies_match_a_plain_numpy_loop():
    rng = np.random.default_rng(0)
    samples = rng.dirichlet([0.5, 1.0, 2.0], size=(7, 5))  # (S, n, k)
    pe, ee, mi = (
        bayes.predictive_entropy(samples),
        bayes.expected_entropy(samples),
        bayes.mutual_information(samples),
    )
    for i in range(5):
        mean = samples[:, i].mean(axis=0)
        expected_pe = _numpy_entropy(mean)
        expected_ee = np.mean([_numpy_entropy(samples[s, i]) for s in range(7)])
        assert pe[i] == pytest.approx(expected_pe, rel=1e-12)
        assert ee[i] == pytest.approx(expected_ee, rel=1e-12)
        assert mi[i] == pytest.approx(expected_pe - expected_ee, abs=1e-12)


def test_binary_probabilities_and_predictive_objects():
    p = np.array([[0.2, 0.9], [0.6, 0.9]])  # (S=2, n=2) positive-class probabilities
    two_class = np.stack([1 - p, p], axis=-1)
    np.testing.assert_allclose(bayes.mutual_information(p), bayes.mutual_information(two_class))
    predictive = bayes.Predictive(samples=two_class, variances=np.zeros_like(two_class))
    np.testing.assert_allclose(
        bayes.predictive_entropy(predictive), bayes.predictive_entropy(two_class)
    )
    # Agreeing passes carry no epistemic uncertainty.
    assert bayes.mutual_information(p)[1] == pytest.approx(0.0, abs=1e-15)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(2, 5), st.integers(0, 10_000))
def test_mutual_information_is_between_zero_and_predictive_entropy(num_samples, k, seed):
    samples = np.random.default_rng(seed).dirichlet(np.ones(k), size=(num_samples, 3))
    mi = bayes.mutual_information(samples)
    assert np.all(mi >= 0)
    assert np.all(mi <= bayes.predictive_entropy(samples) + 1e-12)
    assert np.all(bayes.predictive_entropy(samples) <= np.log(k) + 1e-12)


def test_bad_samples_are_rejected():
    with pytest.raises(ValueError, match=r"Received: samples.shape=\(3,\)"):
        bayes.predictive_entropy(np.ones(3))
    with pytest.raises(ValueError, match=r"not logits. Received: min=-1.0"):
        bayes.expected_entropy(np.array([[[-1.0, 2.0]]]))
