import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from scipy import special, stats

from tfcraft.distributions import MIN_SCALE, num_params
from tfcraft.layers import (
    BernoulliHead,
    CategoricalHead,
    DenseFlipout,
    DistributionHead,
    MixtureNormalHead,
    NormalHead,
    StudentTHead,
    find_head,
)
from tfcraft.losses import NegativeLogLikelihood

tfd = tfp.distributions

# (head factory, non-default variant, targets maker)
HEADS = {
    "normal": (lambda: NormalHead(), lambda: NormalHead(event_size=2, seed=3), 2),
    "student_t": (lambda: StudentTHead(), lambda: StudentTHead(event_size=2, seed=3), 2),
    "bernoulli": (lambda: BernoulliHead(), lambda: BernoulliHead(event_size=3, seed=3), 3),
    "categorical": (
        lambda: CategoricalHead(3),
        lambda: CategoricalHead(num_classes=4, kernel_initializer="he_normal", seed=3),
        4,
    ),
    "mixture_normal": (
        lambda: MixtureNormalHead(2),
        lambda: MixtureNormalHead(num_components=3, bias_initializer="ones", seed=3),
        3,
    ),
}


def _targets(family, n, rng, size=1):
    if family in ("normal", "student_t", "mixture_normal"):
        return rng.normal(size=(n, size)).astype("float32")
    if family == "bernoulli":
        return rng.integers(0, 2, size=(n, size)).astype("float32")
    return rng.integers(0, size, size=(n,)).astype("int32")


def _nll(head):
    return NegativeLogLikelihood(head.family)


def _softplus(raw):
    return np.logaddexp(0.0, raw)


def _scipy_log_prob(family, params, y):
    """Log-density of `y` under the documented layout of `params` (float64 SciPy)."""
    params, y = np.asarray(params, np.float64), np.asarray(y, np.float64)
    if family == "normal":
        loc, raw = np.split(params, 2, axis=-1)
        return stats.norm.logpdf(y, loc, _softplus(raw) + MIN_SCALE).sum(axis=-1)
    if family == "student_t":
        loc, raw, raw_df = np.split(params, 3, axis=-1)
        df = 2.0 + _softplus(raw_df)
        return stats.t.logpdf(y, df, loc, _softplus(raw) + MIN_SCALE).sum(axis=-1)
    if family == "bernoulli":
        return stats.bernoulli.logpmf(y, special.expit(params)).sum(axis=-1)
    if family == "categorical":
        log_probs = special.log_softmax(params, axis=-1)
        return log_probs[np.arange(len(y)), y.astype(int)]
    logits, loc, raw = np.split(params, 3, axis=-1)  # mixture_normal, univariate
    log_weights = special.log_softmax(logits, axis=-1)
    log_components = stats.norm.logpdf(y, loc, _softplus(raw) + MIN_SCALE)
    return special.logsumexp(log_weights + log_components, axis=-1)


def _numpy_mean(family, params):
    """Mean of the documented distribution, from the raw parameters."""
    params = np.asarray(params, np.float64)
    if family in ("normal", "student_t"):
        return np.split(params, 2 if family == "normal" else 3, axis=-1)[0]
    if family == "bernoulli":
        return special.expit(params)
    logits, loc, _ = np.split(params, 3, axis=-1)  # mixture_normal
    return np.sum(special.softmax(logits, axis=-1) * loc, axis=-1, keepdims=True)


@pytest.mark.parametrize("family", list(HEADS))
def test_head_outputs_params_and_matching_distribution(family):
    make, _, _ = HEADS[family]
    head = make()
    assert head.family == family
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    params = head(x)
    size = head._size()
    assert params.shape == (5, num_params(family, size))
    dist = head.distribution(params)
    assert isinstance(dist, tfd.Distribution)
    y = _targets(family, 5, np.random.default_rng(1), size if family != "mixture_normal" else 1)
    if family == "categorical":
        y = y % size
    # Reference: SciPy log-densities from the raw parameters with the documented
    # transforms (softplus scales + MIN_SCALE, df = 2 + softplus, logits).
    expected = _scipy_log_prob(family, params.numpy(), y)
    assert dist.log_prob(y).shape == (5,)
    np.testing.assert_allclose(dist.log_prob(y), expected, rtol=1e-5, atol=1e-5)
    if family != "categorical":
        np.testing.assert_allclose(
            dist.mean(), _numpy_mean(family, params.numpy()), rtol=1e-5, atol=1e-6
        )
    # The projection is a plain affine map of the features.
    np.testing.assert_allclose(params, x @ head.kernel.numpy() + head.bias.numpy(), rtol=1e-5)


@pytest.mark.parametrize("family", list(HEADS))
@pytest.mark.parametrize("kind", ["sequential", "functional"])
def test_models_ending_in_head_train_with_fit(family, kind):
    keras.utils.set_random_seed(0)
    make, _, _ = HEADS[family]
    head = make()
    size = 1 if family == "mixture_normal" else head._size()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 3)).astype("float32")
    y = _targets(family, 128, rng, size)
    if kind == "sequential":
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(8, "relu"), head])
    else:
        inputs = keras.Input((3,))
        model = keras.Model(inputs, head(keras.layers.Dense(8, "relu")(inputs)))
    assert find_head(model) is head
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=_nll(head))
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("family", list(HEADS))
def test_keras_roundtrip_with_non_default_args(family, tmp_path):
    _, make, _ = HEADS[family]
    head = make()
    inputs = keras.Input((3,))
    model = keras.Model(inputs, head(keras.layers.Dense(5)(inputs)))
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)  # safe mode, no custom_objects
    restored_head = find_head(restored)
    assert type(restored_head) is type(head)
    assert restored_head.get_config() == head.get_config()
    x = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    np.testing.assert_array_equal(model.predict(x, verbose=0), restored.predict(x, verbose=0))


def test_normal_head_learns_line_and_noise():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, size=(2000, 1)).astype("float32")
    y = (1.5 * x - 0.5 + 0.3 * rng.normal(size=x.shape)).astype("float32")
    head = NormalHead(seed=0)
    model = keras.Sequential([keras.Input((1,)), head])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=_nll(head))
    model.fit(x, y, epochs=40, batch_size=200, verbose=0)
    grid = np.array([[-1.0], [0.0], [1.0]], "float32")
    dist = head.distribution(model.predict(grid, verbose=0))
    np.testing.assert_allclose(dist.mean()[:, 0], 1.5 * grid[:, 0] - 0.5, atol=0.05)
    np.testing.assert_allclose(dist.stddev()[:, 0], 0.3, atol=0.03)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: NormalHead(event_size=0), r"Received: event_size=0"),
        (lambda: StudentTHead(event_size=-2), r"Received: event_size=-2"),
        (lambda: BernoulliHead(event_size=0), r"Received: event_size=0"),
        (lambda: CategoricalHead(1), r"Received: num_classes=1"),
        (lambda: MixtureNormalHead(0), r"Received: num_components=0"),
    ],
)
def test_bad_sizes_raise_value_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_seed_and_unknown_input_dim():
    with pytest.raises(TypeError, match=r"Received: seed='a'"):
        NormalHead(seed="a")
    with pytest.raises(ValueError, match="needs a known last input dimension"):
        NormalHead().build((None, None))


def test_find_head_cases():
    head = NormalHead()
    # Output layer is not a head.
    model = keras.Sequential([keras.Input((2,)), head, keras.layers.Dense(1)])
    assert find_head(model) is None
    # Nested model as output layer.
    inner = keras.Sequential([keras.Input((2,)), NormalHead()])
    outer = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2), inner])
    assert find_head(outer) is inner.layers[-1]
    # Multi-output functional model is ambiguous.
    inputs = keras.Input((2,))
    multi = keras.Model(inputs, [NormalHead()(inputs), BernoulliHead()(inputs)])
    assert find_head(multi) is None

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = DenseFlipout(4)
            self.head = StudentTHead()

        def call(self, x):
            return self.head(self.hidden(x))

    sub = Subclassed()
    sub(tf.ones((1, 2)))
    assert find_head(sub) is sub.head
    assert isinstance(find_head(sub), DistributionHead)
    assert find_head(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])) is None
