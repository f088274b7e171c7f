import keras
import numpy as np
import pytest
import tensorflow_probability as tfp
from scipy import optimize, special, stats

from tfcraft import bayes
from tfcraft.distributions import MIN_SCALE
from tfcraft.layers import (
    CategoricalHead,
    DenseFlipout,
    DenseReparameterization,
    MCDropout,
    MixtureNormalHead,
    NormalHead,
    StudentTHead,
)

tfd = tfp.distributions


def _x(rows=6, features=3, seed=0):
    return np.random.default_rng(seed).normal(size=(rows, features)).astype("float32")


def _head_model(head, dropout=None, seed=0):
    layers = [keras.Input((3,)), keras.layers.Dense(8, activation="tanh")]
    if dropout:
        layers.append(MCDropout(dropout, seed=seed))
    return keras.Sequential([*layers, head])


def _normal_moments(params):
    """Hand-computed moments of a uniform mixture of Normals over axis 0."""
    loc = params[..., 0].astype(np.float64)
    scale = special.log1p(np.exp(params[..., 1].astype(np.float64))) + MIN_SCALE
    mean = loc.mean(axis=0)
    second_moment = (scale**2 + loc**2).mean(axis=0)
    return loc, scale, mean, np.sqrt(second_moment - mean**2)


def test_plain_model_raises_naming_what_is_missing():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="no distribution head and no stochastic layer"):
        bayes.predict(model, _x())


@pytest.mark.parametrize("num_samples", [0, -3])
def test_num_samples_must_be_positive(num_samples):
    model = _head_model(NormalHead())
    with pytest.raises(ValueError, match=rf"Received: num_samples={num_samples}"):
        bayes.predict(model, _x(), num_samples=num_samples)


def test_not_a_model_raises_type_error():
    with pytest.raises(TypeError, match="model_or_ensemble"):
        bayes.predict("model", _x())


def test_deterministic_head_is_one_exact_normal():
    model = _head_model(NormalHead(seed=1))
    predictive = bayes.predict(model, _x(), num_samples=50)
    params = model(_x()).numpy()
    loc, scale, _, _ = _normal_moments(params[None])
    assert predictive.samples.shape == (1, 6, 1)
    # Eager call vs compiled sampler may take different float32 matmul kernels.
    np.testing.assert_allclose(predictive.mean[:, 0], loc[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(predictive.stddev[:, 0], scale[0], rtol=1e-5)
    np.testing.assert_allclose(predictive.epistemic_stddev, 0.0)
    for level in (0.5, 0.95):
        lower, upper = predictive.interval(level)
        z = stats.norm.ppf((1 + level) / 2)
        np.testing.assert_allclose(lower[:, 0], loc[0] - z * scale[0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(upper[:, 0], loc[0] + z * scale[0], rtol=1e-5, atol=1e-5)


def test_mc_dropout_head_matches_numpy_mixture_moments():
    model = _head_model(NormalHead(seed=1), dropout=0.3)
    predictive = bayes.predict(model, _x(), num_samples=40, seed=3)
    assert predictive.params.shape == (40, 6, 2)
    _, _, mean, stddev = _normal_moments(predictive.params)
    np.testing.assert_allclose(predictive.mean[:, 0], mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(predictive.stddev[:, 0], stddev, rtol=1e-4)
    assert np.all(predictive.epistemic_stddev > 0)


def test_stddevs_match_the_closed_form_of_a_dropout_model():
    # MCDropout(rate) on the inputs, then a NormalHead whose scale does not depend
    # on the input: loc = sum_j w_j x_j m_j / (1 - rate) + b with m_j ~ Bernoulli(1 - rate),
    # scale = softplus(c). So, independently of `bayes.predict`:
    #   mean = w . x + b,  aleatoric var = scale**2,
    #   epistemic var = rate / (1 - rate) * sum_j w_j**2 x_j**2,
    #   total var = aleatoric var + epistemic var (law of total variance).
    rate, num_samples = 0.3, 4000
    w, b, c = np.array([0.8, -1.2, 0.5]), 0.3, -0.4
    model = keras.Sequential([keras.Input((3,)), MCDropout(rate, seed=0), NormalHead()])
    model.layers[-1].set_weights([np.stack([w, np.zeros(3)], axis=1), np.array([b, c])])
    x = _x().astype(np.float64)
    predictive = bayes.predict(model, x.astype("float32"), num_samples=num_samples, seed=0)
    scale = np.log1p(np.exp(c)) + MIN_SCALE
    epistemic_var = rate / (1 - rate) * (x**2 @ w**2)
    np.testing.assert_allclose(predictive.aleatoric_stddev[:, 0], scale, rtol=1e-5)
    # Monte Carlo over passes: the sample variance has a relative standard error of
    # about sqrt(2 / num_samples) ~ 2% (more with Bernoulli kurtosis); allow 4x.
    np.testing.assert_allclose(predictive.epistemic_stddev[:, 0] ** 2, epistemic_var, rtol=0.12)
    total_error = np.abs(predictive.stddev[:, 0] ** 2 - (scale**2 + epistemic_var))
    assert np.all(total_error < 0.12 * epistemic_var), total_error
    mean_error = 4 * np.sqrt(epistemic_var / num_samples)
    assert np.all(np.abs(predictive.mean[:, 0] - (x @ w + b)) < mean_error)


def test_distribution_is_the_uniform_mixture():
    model = _head_model(NormalHead(seed=2), dropout=0.5)
    predictive = bayes.predict(model, _x(), num_samples=20, seed=0)
    dist = predictive.distribution
    assert isinstance(dist, tfd.MixtureSameFamily)
    np.testing.assert_allclose(dist.mean().numpy(), predictive.mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dist.stddev().numpy(), predictive.stddev, rtol=1e-4)
    y = np.zeros((6, 1), "float32")
    loc, scale, _, _ = _normal_moments(predictive.params)
    expected = special.logsumexp(stats.norm.logpdf(0.0, loc, scale), axis=0) - np.log(20)
    np.testing.assert_allclose(dist.log_prob(y).numpy(), expected, rtol=1e-4)


def _numpy_mixture_quantile(loc, scale, weights, q):
    def cdf_gap(value):
        return np.sum(weights * stats.norm.cdf(value, loc, scale)) - q

    return optimize.brentq(cdf_gap, loc.min() - 20 * scale.max(), loc.max() + 20 * scale.max())


def test_interval_matches_root_of_mixture_cdf():
    model = _head_model(NormalHead(seed=4), dropout=0.5)
    predictive = bayes.predict(model, _x(), num_samples=15, seed=1)
    loc, scale, _, _ = _normal_moments(predictive.params)
    lower, upper = predictive.interval(0.9)
    weights = np.full(15, 1 / 15)
    for row in range(6):
        expected_lower = _numpy_mixture_quantile(loc[:, row], scale[:, row], weights, 0.05)
        expected_upper = _numpy_mixture_quantile(loc[:, row], scale[:, row], weights, 0.95)
        np.testing.assert_allclose(lower[row, 0], expected_lower, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(upper[row, 0], expected_upper, rtol=1e-5, atol=1e-5)


def test_mixture_normal_head_interval_and_moments():
    model = _head_model(MixtureNormalHead(3, seed=0))
    predictive = bayes.predict(model, _x())
    params = predictive.params[0].astype(np.float64)
    logits, loc, raw = np.split(params, 3, axis=-1)
    weights = special.softmax(logits, axis=-1)
    scale = special.log1p(np.exp(raw)) + MIN_SCALE
    mean = np.sum(weights * loc, axis=-1)
    variance = np.sum(weights * (scale**2 + loc**2), axis=-1) - mean**2
    np.testing.assert_allclose(predictive.mean[:, 0], mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(predictive.stddev[:, 0] ** 2, variance, rtol=1e-4)
    lower, _ = predictive.interval(0.8)
    for row in range(6):
        expected = _numpy_mixture_quantile(loc[row], scale[row], weights[row], 0.1)
        np.testing.assert_allclose(lower[row, 0], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("level", [0.0, 1.0, 1.5])
def test_interval_level_must_be_in_open_unit_interval(level):
    predictive = bayes.predict(_head_model(NormalHead()), _x())
    with pytest.raises(ValueError, match=rf"Received: level={level}"):
        predictive.interval(level)


def test_categorical_head_uses_mean_probabilities():
    model = _head_model(CategoricalHead(4, seed=0), dropout=0.4)
    predictive = bayes.predict(model, _x(), num_samples=25, seed=0)
    per_pass = special.softmax(predictive.params.astype(np.float64), axis=-1)
    np.testing.assert_allclose(predictive.mean, per_pass.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(predictive.mean.sum(axis=-1), 1.0, rtol=1e-5)
    # Law of total variance for the one-hot indicator: p (1 - p) in total.
    np.testing.assert_allclose(
        predictive.stddev**2, predictive.mean * (1 - predictive.mean), rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(
        predictive.distribution.probs_parameter().numpy(), predictive.mean, rtol=1e-6
    )
    with pytest.raises(ValueError, match="family='categorical'"):
        predictive.interval(0.9)


def test_headless_mc_dropout_is_a_mixture_of_point_masses():
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(16), MCDropout(0.5, seed=0), keras.layers.Dense(1)]
    )
    predictive = bayes.predict(model, _x(), num_samples=50, seed=0)
    assert predictive.family is None
    np.testing.assert_allclose(predictive.aleatoric_stddev, 0.0)
    np.testing.assert_allclose(predictive.stddev, predictive.samples.std(axis=0), rtol=1e-6)
    lower, upper = predictive.interval(0.8)
    np.testing.assert_allclose(lower, np.quantile(predictive.samples, 0.1, axis=0), rtol=1e-6)
    np.testing.assert_allclose(upper, np.quantile(predictive.samples, 0.9, axis=0), rtol=1e-6)
    np.testing.assert_allclose(predictive.distribution.mean().numpy(), predictive.mean, rtol=1e-5)


def test_seed_reproducible_and_leaves_model_stream_alone():
    model = _head_model(NormalHead(seed=0), dropout=0.5, seed=7)
    first = bayes.predict(model, _x(), num_samples=10, seed=11)
    second = bayes.predict(model, _x(), num_samples=10, seed=11)
    other = bayes.predict(model, _x(), num_samples=10, seed=12)
    np.testing.assert_array_equal(first.params, second.params)
    assert not np.allclose(first.params, other.params)
    # Passes within one call differ: each pass draws a fresh mask.
    assert not np.allclose(first.params[0], first.params[1])
    # The model's own stream is where it was before the seeded calls.
    state = [g.state.numpy() for g in model.layers[1]._seed_generators]
    bayes.predict(model, _x(), num_samples=3, seed=5)
    np.testing.assert_array_equal(
        state, [g.state.numpy() for g in model.layers[1]._seed_generators]
    )


def test_batch_size_chunks_give_the_same_deterministic_predictions():
    model = _head_model(NormalHead(seed=3))
    whole = bayes.predict(model, _x(rows=10))
    chunked = bayes.predict(model, _x(rows=10), batch_size=3)
    # Different batch shapes may take different matmul kernels: equal to float32 rounding.
    np.testing.assert_allclose(chunked.params, whole.params, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="Received: batch_size=0"):
        bayes.predict(model, _x(), batch_size=0)


def test_flipout_bnn_is_stochastic():
    model = keras.Sequential(
        [keras.Input((3,)), DenseFlipout(8, activation="relu", seed=0), NormalHead(seed=0)]
    )
    predictive = bayes.predict(model, _x(), num_samples=20, seed=0)
    assert predictive.num_samples == 20
    assert np.all(predictive.epistemic_stddev > 0)


def test_list_of_models_is_an_ensemble():
    members = [_head_model(NormalHead(seed=s)) for s in range(3)]
    predictive = bayes.predict(members, _x(), num_samples=100)
    assert predictive.num_samples == 3  # one pass per deterministic member
    per_member = np.stack([m(_x()).numpy() for m in members])
    _, _, mean, stddev = _normal_moments(per_member)
    np.testing.assert_allclose(predictive.mean[:, 0], mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(predictive.stddev[:, 0], stddev, rtol=1e-4)


def test_ensemble_of_stochastic_members_weights_members_equally():
    members = [_head_model(NormalHead(seed=s), dropout=0.3, seed=s) for s in range(2)]
    predictive = bayes.predict(members, _x(), num_samples=7, seed=0)
    assert predictive.samples.shape == (14, 6, 1)


def test_ensemble_members_must_share_the_family():
    members = [_head_model(NormalHead()), _head_model(CategoricalHead(3))]
    with pytest.raises(ValueError, match="same kind of head"):
        bayes.predict(members, _x())


def test_reparameterization_layer_gets_fresh_weights_every_pass():
    # One weight sample per call: passes must be separate calls, not a tiled batch.
    model = keras.Sequential(
        [keras.Input((3,)), DenseReparameterization(4, posterior_scale_init=0.5, seed=0)]
    )
    predictive = bayes.predict(model, _x(rows=2), num_samples=5, seed=0)
    assert len({float(p[0, 0]) for p in predictive.samples}) == 5


def test_student_t_head_interval_matches_scipy():
    model = _head_model(StudentTHead(seed=0))
    predictive = bayes.predict(model, _x())
    loc, raw_scale, raw_df = np.split(predictive.params[0].astype(np.float64), 3, axis=-1)
    scale = special.log1p(np.exp(raw_scale)) + MIN_SCALE
    df = 2.0 + special.log1p(np.exp(raw_df))
    lower, upper = predictive.interval(0.9)
    np.testing.assert_allclose(lower, stats.t.ppf(0.05, df, loc, scale), rtol=1e-4)
    np.testing.assert_allclose(upper, stats.t.ppf(0.95, df, loc, scale), rtol=1e-4)
