import keras
import numpy as np
import pytest
import tensorflow_probability as tfp
from scipy import stats

from tfcraft.layers import NormalPrior, ScaleMixturePrior, priors

tfd = tfp.distributions


@pytest.mark.parametrize("scale", [0.1, 1.0, 3.0])
def test_normal_prior_log_prob_matches_scipy(scale):
    w = np.random.default_rng(0).normal(size=(3, 2)).astype("float32")
    dist = NormalPrior(scale)((3, 2), "float32")
    assert dist.event_shape == (3, 2) and dist.batch_shape == ()
    expected = stats.norm(0.0, scale).logpdf(w).sum()
    np.testing.assert_allclose(float(dist.log_prob(w)), expected, rtol=1e-5)


@pytest.mark.parametrize(("pi", "sigma1", "sigma2"), [(0.5, 1.0, 0.0025), (0.2, 2.0, 0.1)])
def test_scale_mixture_log_prob_matches_numpy(pi, sigma1, sigma2):
    w = np.random.default_rng(1).normal(scale=0.5, size=(4, 3)).astype("float32")
    dist = ScaleMixturePrior(pi, sigma1, sigma2)((4, 3), "float32")
    assert dist.event_shape == (4, 3)
    density = pi * stats.norm(0, sigma1).pdf(w) + (1 - pi) * stats.norm(0, sigma2).pdf(w)
    np.testing.assert_allclose(float(dist.log_prob(w)), np.log(density).sum(), rtol=1e-4)


def test_normal_prior_kl_is_analytic_and_matches_closed_form():
    loc = np.random.default_rng(2).normal(size=(2, 3))
    scale = np.full((2, 3), 0.3)
    posterior = tfd.Independent(tfd.Normal(loc, scale), reinterpreted_batch_ndims=2)
    kl = float(tfd.kl_divergence(posterior, NormalPrior(2.0)((2, 3), "float64")))
    expected = np.sum(np.log(2.0 / scale) + (scale**2 + loc**2) / (2 * 4.0) - 0.5)
    np.testing.assert_allclose(kl, expected, rtol=1e-10)


def test_get_accepts_names_configs_and_instances():
    assert isinstance(priors.get("normal"), NormalPrior)
    assert isinstance(priors.get("scale_mixture"), ScaleMixturePrior)
    prior = ScaleMixturePrior(pi=0.3, sigma1=2.0, sigma2=0.05)
    assert priors.get(prior) is prior
    for config in (
        priors.serialize(prior),
        {"class_name": "ScaleMixturePrior", "config": prior.get_config()},
    ):
        restored = priors.get(config)
        assert isinstance(restored, ScaleMixturePrior)
        assert restored.get_config() == prior.get_config()


def test_serialized_prior_deserializes_in_keras_safe_mode():
    prior = NormalPrior(scale=0.25)
    config = keras.saving.serialize_keras_object(prior)
    restored = keras.saving.deserialize_keras_object(config, safe_mode=True)
    assert isinstance(restored, NormalPrior) and restored.scale == 0.25


def test_get_rejects_unknown_identifiers():
    with pytest.raises(
        ValueError, match=r"\['normal', 'scale_mixture'\].*Received: prior='cauchy'"
    ):
        priors.get("cauchy")
    with pytest.raises(ValueError, match="unknown class_name"):
        priors.get({"class_name": "Laplace", "config": {}})
    with pytest.raises(TypeError, match=r"Received: prior=3"):
        priors.get(3)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: NormalPrior(0.0), r"Received: scale=0.0"),
        (lambda: NormalPrior(-1.0), r"Received: scale=-1.0"),
        (lambda: ScaleMixturePrior(pi=1.5), r"Received: pi=1.5"),
        (lambda: ScaleMixturePrior(pi=-0.1), r"Received: pi=-0.1"),
        (lambda: ScaleMixturePrior(sigma1=0.0), r"Received: sigma1=0.0"),
        (lambda: ScaleMixturePrior(sigma2=-2.0), r"Received: sigma2=-2.0"),
    ],
)
def test_bad_prior_arguments_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()
