import doctest

import keras
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf
import tensorflow_probability as tfp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import tfcraft.losses as losses
from tfcraft import distributions

tfd = tfp.distributions
REDUCTIONS = ["sum_over_batch_size", "sum", "none", "mean", "mean_with_sample_weight"]
FAST = settings(max_examples=25, deadline=None)


def _softplus_inverse(x):
    return np.log(np.expm1(x))


# --------------------------------------------------------------------------- Huber


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("delta", [0.3, 1.0, 2.5])
@pytest.mark.parametrize("weighted", [False, True])
def test_huber_matches_keras(delta, reduction, weighted):
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.normal(scale=2.0, size=(2, 8, 3)).astype("float32")
    weight = rng.uniform(size=(8,)).astype("float32") if weighted else None
    ours = losses.Huber(delta=delta, reduction=reduction)(y_true, y_pred, sample_weight=weight)
    reference = keras.losses.Huber(delta=delta, reduction=reduction)(
        y_true, y_pred, sample_weight=weight
    )
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-7)


def test_huber_function_matches_keras_function():
    rng = np.random.default_rng(1)
    y_true, y_pred = rng.normal(scale=3.0, size=(2, 5, 4)).astype("float32")
    np.testing.assert_allclose(
        losses.huber(y_true, y_pred, delta=0.7),
        keras.losses.huber(y_true, y_pred, delta=0.7),
        rtol=1e-6,
    )


def test_huber_rank_one_targets_against_column_predictions_like_keras():
    y_true = np.array([0.0, 1.0, 5.0], "float32")
    y_pred = np.array([[0.5], [1.0], [0.0]], "float32")
    for reduction in ("none", "sum_over_batch_size"):
        ours = losses.Huber(reduction=reduction)(y_true, y_pred)
        reference = keras.losses.Huber(reduction=reduction)(y_true, y_pred)
        assert ours.shape == reference.shape
        np.testing.assert_allclose(ours, reference, rtol=1e-6)


@FAST
@given(
    errors=arrays(np.float32, 16, elements=st.floats(-1e3, 1e3, width=32)),
    delta=st.floats(0.01, 10.0),
)
def test_huber_between_zero_and_half_mse(errors, delta):
    loss = float(losses.huber(np.zeros_like(errors), errors, delta=delta))
    half_mse = 0.5 * float(np.mean(errors.astype(np.float64) ** 2))
    assert 0.0 <= loss <= half_mse * (1 + 1e-5) + 1e-6


@pytest.mark.parametrize("delta", [0.0, -1.0])
def test_huber_rejects_non_positive_delta(delta):
    with pytest.raises(ValueError, match=rf"Received: delta={delta}"):
        losses.Huber(delta=delta)
    with pytest.raises(ValueError, match=rf"Received: delta={delta}"):
        losses.huber([[0.0]], [[1.0]], delta=delta)


def test_huber_rejects_non_number_delta():
    with pytest.raises(TypeError, match=r"Received: delta='1'"):
        losses.Huber(delta="1")


def test_huber_lets_tensor_delta_through_and_checks_it_at_run_time():
    loss = losses.Huber(delta=tf.constant(2.0))
    y_true, y_pred = np.zeros((2, 1), "float32"), np.full((2, 1), 4.0, "float32")
    np.testing.assert_allclose(loss(y_true, y_pred), 2.0 * (4.0 - 1.0), rtol=1e-6)
    assert loss.get_config()["delta"] == 2.0
    with pytest.raises(ValueError, match=r"Received: delta=-1.0"):
        losses.Huber(delta=tf.constant(-1.0))(y_true, y_pred)

    @tf.function
    def graph_loss(delta):
        return losses.huber(y_true, y_pred, delta=delta)

    np.testing.assert_allclose(graph_loss(tf.constant(2.0)), 6.0, rtol=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError, match="delta"):
        graph_loss(tf.constant(-1.0))


@pytest.mark.parametrize(
    "loss",
    [
        losses.Huber(),
        losses.BinaryFocal(),
        losses.CategoricalFocal(),
    ],
    ids=["huber", "binary_focal", "categorical_focal"],
)
def test_losses_reject_mismatched_shapes_naming_both(loss):
    y_true, y_pred = np.zeros((4, 3), "float32"), np.full((4, 2), 0.5, "float32")
    with pytest.raises(ValueError, match=r"y_true.shape=\(4, 3\), y_pred.shape=\(4, 2\)"):
        loss(y_true, y_pred)
    # Shapes that would silently broadcast in NumPy are rejected too.
    with pytest.raises(ValueError, match=r"y_true.shape=\(4, 3\), y_pred.shape=\(4, 1\)"):
        loss(y_true, np.full((4, 1), 0.5, "float32"))
    with pytest.raises(ValueError, match=r"y_true.shape=\(4,\), y_pred.shape=\(4, 3\)"):
        loss(np.zeros(4, "float32"), np.full((4, 3), 0.5, "float32"))


def test_binary_focal_aligns_rank_one_targets_like_keras():
    y_true = np.array([1.0, 0.0, 1.0], "float32")
    y_pred = np.array([[0.9], [0.2], [0.4]], "float32")
    ours = losses.BinaryFocal(reduction="none")(y_true, y_pred)
    reference = keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, reduction="none")(
        y_true, y_pred
    )
    assert ours.shape == reference.shape == (3,)
    np.testing.assert_allclose(ours, reference, rtol=1e-6)


def test_huber_with_a_variable_delta_follows_it_and_serializes_its_value():
    delta = tf.Variable(2.0)
    loss = losses.Huber(delta=delta)
    y_true, y_pred = np.zeros((2, 1), "float32"), np.full((2, 1), 4.0, "float32")
    np.testing.assert_allclose(loss(y_true, y_pred), 6.0, rtol=1e-6)
    delta.assign(1.0)
    np.testing.assert_allclose(loss(y_true, y_pred), 3.5, rtol=1e-6)
    assert keras.losses.deserialize(keras.losses.serialize(loss)).delta == 1.0


# --------------------------------------------------------------------------- Pinball


def _numpy_pinball(y_true, y_pred, quantiles):
    error = y_true.reshape(-1, 1) - y_pred
    q = np.asarray(quantiles)
    return np.mean(np.maximum(q * error, (q - 1) * error), axis=-1)


@pytest.mark.parametrize("target_shape", [(6,), (6, 1)])
def test_pinball_matches_numpy(target_shape):
    rng = np.random.default_rng(2)
    y_true = rng.normal(size=target_shape).astype("float32")
    y_pred = rng.normal(size=(6, 3)).astype("float32")
    quantiles = (0.1, 0.5, 0.9)
    expected = _numpy_pinball(y_true.astype(np.float64), y_pred.astype(np.float64), quantiles)
    np.testing.assert_allclose(losses.pinball(y_true, y_pred, quantiles), expected, rtol=1e-6)
    per_example = losses.Pinball(quantiles, reduction="none")(y_true, y_pred)
    np.testing.assert_allclose(per_example, expected, rtol=1e-6)
    np.testing.assert_allclose(losses.Pinball(quantiles)(y_true, y_pred), expected.mean(), 1e-6)


@FAST
@given(
    y_true=arrays(np.float32, 12, elements=st.floats(-100, 100, width=32)),
    y_pred=arrays(np.float32, 12, elements=st.floats(-100, 100, width=32)),
)
def test_pinball_median_is_half_mae_and_non_negative(y_true, y_pred):
    loss = losses.pinball(y_true, y_pred[:, None], quantiles=(0.5,)).numpy()
    mae = np.abs(y_true.astype(np.float64) - y_pred)
    np.testing.assert_allclose(loss, 0.5 * mae, rtol=1e-5, atol=1e-5)
    assert np.all(loss >= 0.0)


@pytest.mark.parametrize(
    ("quantiles", "pattern"),
    [
        ((0.1, 1.2), r"Received: quantiles=1.2"),
        ((0.0, 0.5), r"Received: quantiles=0.0"),
        ((0.9, 0.1), r"strictly increasing. Received: quantiles=\[0.9, 0.1\]"),
        ((0.5, 0.5), r"strictly increasing"),
        ((), r"at least one .* Received: quantiles=\(\)"),
    ],
)
def test_pinball_rejects_bad_quantiles(quantiles, pattern):
    with pytest.raises(ValueError, match=pattern):
        losses.Pinball(quantiles)


def test_pinball_needs_one_column_per_quantile():
    with pytest.raises(ValueError, match=r"one column per quantile .* y_pred.shape=\(4, 2\)"):
        losses.pinball(np.zeros(4), np.zeros((4, 2)), quantiles=(0.1, 0.5, 0.9))


# --------------------------------------------------------------------------- focal


@pytest.mark.parametrize("from_logits", [False, True])
def test_binary_focal_without_focus_is_binary_crossentropy(from_logits):
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 2, size=(16, 3)).astype("float32")
    y_pred = rng.normal(scale=3.0, size=(16, 3)).astype("float32")
    if not from_logits:
        y_pred = 1 / (1 + np.exp(-y_pred))
    ours = losses.BinaryFocal(gamma=0.0, alpha=None, from_logits=from_logits)(y_true, y_pred)
    reference = keras.losses.BinaryCrossentropy(from_logits=from_logits)(y_true, y_pred)
    np.testing.assert_allclose(ours, reference, rtol=1e-5)


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize(("gamma", "alpha"), [(2.0, 0.25), (1.5, None), (0.5, 0.7)])
def test_binary_focal_matches_keras_focal(gamma, alpha, from_logits):
    rng = np.random.default_rng(4)
    y_true = rng.integers(0, 2, size=(16, 2)).astype("float32")
    logits = rng.normal(scale=2.0, size=(16, 2)).astype("float32")
    y_pred = logits if from_logits else 1 / (1 + np.exp(-logits))
    reference = keras.losses.BinaryFocalCrossentropy(
        apply_class_balancing=alpha is not None,
        alpha=0.25 if alpha is None else alpha,
        gamma=gamma,
        from_logits=from_logits,
        reduction="none",
    )(y_true, y_pred)
    ours = losses.BinaryFocal(gamma, alpha, from_logits, reduction="none")(y_true, y_pred)
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-7)


def test_binary_focal_from_logits_is_stable_for_extreme_logits():
    logits = np.array([[80.0], [-80.0], [80.0]], "float32")
    y_true = np.array([[0.0], [1.0], [1.0]], "float32")
    loss = losses.binary_focal(y_true, logits, gamma=0.0, alpha=None, from_logits=True).numpy()
    np.testing.assert_allclose(loss, [80.0, 80.0, 0.0], atol=1e-4)


@pytest.mark.parametrize("from_logits", [False, True])
def test_categorical_focal_without_focus_is_categorical_crossentropy(from_logits):
    rng = np.random.default_rng(5)
    y_true = np.eye(4, dtype="float32")[rng.integers(0, 4, size=16)]
    logits = rng.normal(scale=3.0, size=(16, 4)).astype("float32")
    y_pred = logits if from_logits else np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    ours = losses.CategoricalFocal(gamma=0.0, from_logits=from_logits)(y_true, y_pred)
    reference = keras.losses.CategoricalCrossentropy(from_logits=from_logits)(y_true, y_pred)
    np.testing.assert_allclose(ours, reference, rtol=1e-5)


@pytest.mark.parametrize("from_logits", [False, True])
def test_categorical_focal_matches_keras_focal(from_logits):
    rng = np.random.default_rng(6)
    y_true = np.eye(3, dtype="float32")[rng.integers(0, 3, size=16)]
    logits = rng.normal(scale=2.0, size=(16, 3)).astype("float32")
    y_pred = logits if from_logits else np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    reference = keras.losses.CategoricalFocalCrossentropy(
        alpha=0.25, gamma=2.0, from_logits=from_logits, reduction="none"
    )(y_true, y_pred)
    ours = losses.CategoricalFocal(2.0, 0.25, from_logits, reduction="none")(y_true, y_pred)
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-7)


def test_categorical_focal_per_class_alpha_matches_numpy():
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 3, size=10)
    y_true = np.eye(3, dtype="float32")[labels]
    logits = rng.normal(size=(10, 3))
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    alpha = [0.2, 1.0, 3.0]
    p_true = p[np.arange(10), labels]
    expected = -np.asarray(alpha)[labels] * (1 - p_true) ** 2 * np.log(p_true)
    ours = losses.categorical_focal(y_true, logits.astype("float32"), 2.0, alpha, True)
    np.testing.assert_allclose(ours, expected, rtol=1e-5)
    with pytest.raises(
        ValueError, match=r"one weight per class \(3\). Received: alpha=\[1.0, 2.0\]"
    ):
        losses.categorical_focal(y_true, p, alpha=[1.0, 2.0])


def test_focal_argument_errors():
    with pytest.raises(ValueError, match=r"Received: gamma=-1.0"):
        losses.BinaryFocal(gamma=-1.0)
    with pytest.raises(ValueError, match=r"Received: alpha=1.5"):
        losses.BinaryFocal(alpha=1.5)
    with pytest.raises(ValueError, match=r"Received: alpha=-0.1"):
        losses.CategoricalFocal(alpha=[1.0, -0.1])
    with pytest.raises(ValueError, match=r"Received: alpha=\[\]"):
        losses.CategoricalFocal(alpha=[])


# --------------------------------------------------------------------------- NLL


def test_nll_of_normal_params_matches_tfp_and_scipy():
    rng = np.random.default_rng(8)
    loc = rng.normal(size=(8, 1))
    scale = rng.uniform(0.5, 2.0, size=(8, 1))
    params = np.concatenate([loc, _softplus_inverse(scale - distributions.MIN_SCALE)], -1)
    params = params.astype("float32")
    y = rng.normal(size=(8,)).astype("float32")
    per_example = losses.negative_log_likelihood(y, params, "normal").numpy()
    np.testing.assert_allclose(
        per_example, -scipy.stats.norm.logpdf(y, loc[:, 0], scale[:, 0]), rtol=1e-4
    )
    reference = -tfd.Normal(loc[:, 0], scale[:, 0]).log_prob(y).numpy().mean()
    ours = losses.NegativeLogLikelihood("normal")(y, params)
    np.testing.assert_allclose(ours, reference, rtol=1e-4)
    np.testing.assert_allclose(ours, losses.NegativeLogLikelihood("normal")(y[:, None], params))


def test_nll_of_student_t_and_categorical_params_match_scipy():
    rng = np.random.default_rng(9)
    params = rng.normal(size=(6, 3)).astype("float32")
    y = rng.normal(size=(6, 1)).astype("float32")
    softplus = np.log1p(np.exp(params.astype(np.float64)))
    df, scale = 2.0 + softplus[:, 2], softplus[:, 1] + distributions.MIN_SCALE
    expected = -scipy.stats.t.logpdf(y[:, 0], df, loc=params[:, 0], scale=scale)
    ours = losses.negative_log_likelihood(y, params, "student_t")
    np.testing.assert_allclose(ours, expected, rtol=1e-4)

    logits = rng.normal(size=(6, 4)).astype("float32")
    labels = rng.integers(0, 4, size=6)
    log_softmax = logits - np.log(np.exp(logits.astype(np.float64)).sum(-1, keepdims=True))
    expected = -log_softmax[np.arange(6), labels]
    ours = losses.NegativeLogLikelihood("categorical", reduction="none")(labels, logits)
    np.testing.assert_allclose(ours, expected, rtol=1e-5)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_accepts_a_distribution_with_keras_reductions(reduction):
    loc = np.array([0.0, 1.0, -1.0, 2.0], "float32")
    y = np.array([0.5, 1.0, 0.0, -1.0], "float32")
    weight = np.array([1.0, 0.5, 2.0, 0.0], "float32")
    per_example = -scipy.stats.norm.logpdf(y, loc, 1.5)
    ours = losses.NegativeLogLikelihood(reduction=reduction)(
        y, tfd.Normal(loc, 1.5), sample_weight=weight
    )
    reference = keras.losses.MeanAbsoluteError(reduction=reduction)(
        np.zeros((4, 1)), per_example[:, None], sample_weight=weight
    )
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, rtol=1e-5)


def test_nll_of_a_distribution_inside_tf_function():
    loss = losses.NegativeLogLikelihood()

    @tf.function
    def step(loc, y):
        return loss(y, tfd.Independent(tfd.Normal(loc, 1.0), reinterpreted_batch_ndims=1))

    loc = np.zeros((3, 2), "float32")
    y = np.ones((3, 2), "float32")
    expected = -2 * scipy.stats.norm.logpdf(1.0)
    np.testing.assert_allclose(step(loc, y), expected, rtol=1e-5)


def test_nll_errors_name_the_family():
    with pytest.raises(
        ValueError, match=r"\['normal', 'student_t', .*Received: distribution='gamma'"
    ):
        losses.NegativeLogLikelihood("gamma")
    with pytest.raises(ValueError, match=r"Received: distribution='gamma'"):
        losses.negative_log_likelihood([0.0], [[0.0, 1.0]], "gamma")
    with pytest.raises(ValueError, match="no distribution family"):
        losses.NegativeLogLikelihood()([0.0], np.zeros((1, 2), "float32"))


def test_nll_trains_a_dense_head_with_model_fit():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(10)
    x = rng.normal(size=(128, 2)).astype("float32")
    y = (1.5 * x[:, 0] + 0.3 * rng.normal(size=128)).astype("float32")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.Adam(0.05), loss=losses.NegativeLogLikelihood("normal"))
    history = model.fit(x, y, batch_size=32, epochs=15, verbose=0).history["loss"]
    assert np.all(np.isfinite(history))
    assert history[-1] < 0.5 * history[0]
    params = model.predict(x[:64], verbose=0)
    manual = losses.negative_log_likelihood(y[:64], params, "normal").numpy().mean()
    evaluated = model.evaluate(x[:64], y[:64], batch_size=64, verbose=0)
    np.testing.assert_allclose(evaluated, manual, rtol=1e-4)


# --------------------------------------------------------------------------- all losses


PER_EXAMPLE_CASES = [
    (losses.Huber, {}, np.zeros((5, 3)), np.ones((5, 3))),
    (losses.Pinball, {}, np.zeros((5,)), np.ones((5, 3))),
    (losses.BinaryFocal, {}, np.ones((5, 3)), np.full((5, 3), 0.3)),
    (losses.CategoricalFocal, {}, np.eye(3)[[0, 1, 2, 0, 1]], np.full((5, 3), 1 / 3)),
    (losses.NegativeLogLikelihood, {"distribution": "normal"}, np.zeros((5,)), np.ones((5, 2))),
]


@pytest.mark.parametrize(("cls", "kwargs", "y_true", "y_pred"), PER_EXAMPLE_CASES)
def test_reduction_none_keeps_one_loss_per_example(cls, kwargs, y_true, y_pred):
    per_example = cls(reduction="none", **kwargs)(y_true, y_pred)
    assert tuple(per_example.shape) == (5,)
    mean = cls(**kwargs)(y_true, y_pred)
    np.testing.assert_allclose(np.mean(per_example), mean, rtol=1e-6)
    assert float(mean) > 0.0


def test_docstring_examples_run():
    result = doctest.testmod(losses)
    assert result.attempted > 10
    assert result.failed == 0
