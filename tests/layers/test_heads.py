import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfcraft.distributions import distribution_from_params, num_params
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
    reference = distribution_from_params(family, params)
    y = _targets(family, 5, np.random.default_rng(1), size if family != "mixture_normal" else 1)
    if family == "categorical":
        y = y % size
    np.testing.assert_allclose(dist.log_prob(y), reference.log_prob(y), rtol=1e-6)
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
