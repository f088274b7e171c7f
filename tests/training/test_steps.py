import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcraft.training import clipping, make_train_step
from tfcraft.training.steps import get_loss, get_metrics, unpack_batch


def _model(seed=0, regularizer=None):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(4, activation="tanh", kernel_regularizer=regularizer),
            keras.layers.Dense(1),
        ]
    )


def _data(n=32):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype("float32")
    return x, (x @ np.array([[1.0], [-2.0], [0.5]], "float32") + 0.1).astype("float32")


def _optimizer_variables(optimizer):
    return [v.numpy().copy() for v in optimizer.variables]


@pytest.mark.parametrize(
    ("make_optimizer", "clip"),
    [
        (lambda: keras.optimizers.SGD(0.1), None),
        (lambda: keras.optimizers.Adam(0.01), "global_norm:0.5"),
    ],
)
def test_accumulation_equals_one_big_batch(make_optimizer, clip):
    x, y = _data(32)
    small, big = _model(), _model()
    big.set_weights(small.get_weights())
    step_small = make_train_step(small, make_optimizer(), "mse", clip=clip, accumulate_steps=4)
    step_big = make_train_step(big, make_optimizer(), "mse", clip=clip)
    run_small, run_big = tf.function(step_small), tf.function(step_big)
    for _ in range(2):  # two updates
        for i in range(4):
            run_small((x[8 * i : 8 * (i + 1)], y[8 * i : 8 * (i + 1)]))
        run_big((x, y))
    for a, b in zip(small.get_weights(), big.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert int(step_small.optimizer.iterations) == int(step_big.optimizer.iterations) == 2


def test_accumulation_does_not_update_before_the_last_micro_batch():
    x, y = _data(8)
    model = _model()
    before = model.get_weights()
    step = tf.function(make_train_step(model, keras.optimizers.SGD(0.1), "mse", accumulate_steps=2))
    step((x, y))
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    step((x, y))
    assert not np.array_equal(before[0], model.get_weights()[0])


def test_default_step_adds_model_losses_and_logs_pre_clip_grad_norm():
    x, y = _data(16)
    model = _model(regularizer=keras.regularizers.L2(0.1))
    reference = _model(regularizer=keras.regularizers.L2(0.1))
    reference.set_weights(model.get_weights())
    with tf.GradientTape() as tape:
        loss = keras.losses.MeanSquaredError()(y, reference(x, training=True)) + tf.add_n(
            reference.losses
        )
    grads = [g.numpy() for g in tape.gradient(loss, reference.trainable_variables)]
    expected_norm = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads))
    before = [v.numpy() for v in model.trainable_variables]
    step = make_train_step(model, keras.optimizers.SGD(0.1), "mse", clip=clipping.ByValue(1e-3))
    logs = tf.function(step)((x, y))
    np.testing.assert_allclose(float(step.results()["loss"]), float(loss), rtol=1e-5)
    np.testing.assert_allclose(float(logs["grad_norm"]), expected_norm, rtol=1e-5)
    # The applied update is plain SGD on the value-clipped gradient (NumPy reference).
    assert any(np.any(np.abs(g) > 1e-3) for g in grads)  # the clip acts on some entries
    after = [v.numpy() for v in model.trainable_variables]
    assert len(after) == len(before) == len(grads) == 4
    for w0, w1, g in zip(before, after, grads, strict=True):
        np.testing.assert_allclose(w1, w0 - 0.1 * np.clip(g, -1e-3, 1e-3), rtol=1e-6, atol=1e-7)


class _FakeVariational(keras.layers.Layer):
    is_variational = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.num_train_examples = None
        self.dense = keras.layers.Dense(1)

    def call(self, x):
        y = self.dense(x)
        self.add_loss(0.5 * tf.reduce_sum(tf.square(self.dense.kernel)))
        return y


def test_variational_models_log_kl_and_nll():
    x, y = _data(16)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), _FakeVariational()])
    step = make_train_step(model, keras.optimizers.SGD(0.01), "mse")
    kernel = model.layers[0].dense.kernel.numpy()
    tf.function(step)((x, y))
    results = {k: float(v) for k, v in step.results().items()}
    assert set(results) == {"loss", "nll", "kl"}
    np.testing.assert_allclose(results["kl"], 0.5 * np.sum(kernel**2), rtol=1e-5)
    np.testing.assert_allclose(results["loss"], results["nll"] + results["kl"], rtol=1e-5)


def test_skip_nonfinite_leaves_weights_and_optimizer_slots_untouched():
    x, y = _data(8)
    model = _model()
    optimizer = keras.optimizers.Adam(0.01)
    step = tf.function(make_train_step(model, optimizer, "mse", skip_nonfinite=True))
    step((x, y))
    weights, slots = model.get_weights(), _optimizer_variables(optimizer)
    bad = x.copy()
    bad[0, 0] = np.nan
    logs = step((bad, y))
    assert int(logs["nonfinite"]) == 1
    for a, b in zip(weights, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(slots, _optimizer_variables(optimizer), strict=True):
        np.testing.assert_array_equal(a, b)


def test_without_skip_a_nonfinite_step_is_applied_and_counted():
    x, y = _data(8)
    model = _model()
    step = tf.function(make_train_step(model, keras.optimizers.SGD(0.1), "mse"))
    bad = x.copy()
    bad[0, 0] = np.inf
    assert int(step((bad, y))["nonfinite"]) == 1
    assert not np.all(np.isfinite(model.get_weights()[0]))


def test_custom_loss_fn_keeps_metrics_and_extra_logs():
    x, y = _data(16)
    model = _model()

    def loss_fn(model, batch, training):
        x, y = batch
        y_pred = model(x, training=training)
        mae = tf.reduce_mean(tf.abs(y - y_pred))
        return mae, {"y_pred": y_pred, "twice": 2 * mae}

    step = make_train_step(
        model,
        keras.optimizers.SGD(0.0),
        loss_fn=loss_fn,
        metrics=[keras.metrics.MeanAbsoluteError()],
    )
    logs = tf.function(step)((x, y))
    results = step.results()
    np.testing.assert_allclose(float(logs["twice"]), 2 * float(results["loss"]), rtol=1e-6)
    np.testing.assert_allclose(
        float(results["mean_absolute_error"]), float(results["loss"]), rtol=1e-6
    )


def test_non_scalar_loss_is_rejected():
    x, y = _data(8)
    step = make_train_step(_model(), "sgd", keras.losses.MeanSquaredError(reduction=None))
    with pytest.raises(ValueError, match=r"must reduce to a scalar.*shape \(8,\)"):
        tf.function(step)((x, y))


def test_loss_and_metric_lookup():
    assert isinstance(get_loss("mse"), keras.losses.Loss)
    assert isinstance(get_loss(lambda t, p: tf.abs(t - p)), keras.losses.Loss)
    with pytest.raises(ValueError, match=r"Received: loss='nope'"):
        get_loss("nope")
    with pytest.raises(TypeError, match=r"Received: loss=3"):
        get_loss(3)
    assert [m.name for m in get_metrics(["mae", keras.metrics.MeanSquaredError()])] == [
        "mean_absolute_error",
        "mean_squared_error",
    ]
    with pytest.raises(TypeError, match=r"keras.metrics.Metric"):
        get_metrics([3])


def test_unpack_batch_and_bad_arguments():
    assert unpack_batch(("x", "y", "w")) == ("x", "y", "w")
    assert unpack_batch("x") == ("x", None, None)
    with pytest.raises(ValueError, match=r"tuple of length 4"):
        unpack_batch((1, 2, 3, 4))
    with pytest.raises(ValueError, match=r"Received: accumulate_steps=0"):
        make_train_step(_model(), "sgd", "mse", accumulate_steps=0)
    with pytest.raises(ValueError, match=r"Received: loss=None, loss_fn=None"):
        make_train_step(_model(), "sgd")
