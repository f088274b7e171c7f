import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcraft.layers import Linear


def _x(shape=(5, 4)):
    return np.random.default_rng(0).normal(size=shape).astype("float32")


def test_matches_keras_dense_with_same_weights():
    layer = Linear(3, activation="relu", seed=0)
    dense = keras.layers.Dense(3, activation="relu")
    x = _x()
    layer.build(x.shape)
    dense.build(x.shape)
    dense.set_weights(layer.get_weights())
    np.testing.assert_allclose(layer(x), dense(x), rtol=1e-6)


def test_weights_are_tracked_and_trained():
    layer = Linear(2)
    x = _x()
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x) ** 2)
    assert [w.name for w in layer.trainable_weights] == ["kernel", "bias"]
    grads = tape.gradient(loss, layer.trainable_weights)
    assert all(np.any(np.asarray(g) != 0) for g in grads)


def test_seed_gives_same_initial_weights_and_no_bias_option():
    a, b = Linear(3, seed=5, use_bias=False), Linear(3, seed=5, use_bias=False)
    a.build((None, 4))
    b.build((None, 4))
    np.testing.assert_array_equal(a.kernel, b.kernel)
    assert a.bias is None and len(a.weights) == 1


def test_roundtrip_with_non_default_args(tmp_path):
    layer = Linear(
        3,
        activation="tanh",
        kernel_initializer="he_normal",
        bias_initializer="ones",
        kernel_regularizer=keras.regularizers.L2(0.01),
        seed=2,
    )
    model = keras.Sequential([keras.Input((4,)), layer])
    model.save(tmp_path / "linear.keras")
    restored = keras.saving.load_model(tmp_path / "linear.keras")
    assert restored.layers[0].get_config() == layer.get_config()
    np.testing.assert_array_equal(model.predict(_x(), verbose=0), restored.predict(_x(), verbose=0))
    assert len(model.losses) == 1  # the kernel regularizer


def test_mixed_precision_computes_in_float16_with_float32_variables():
    layer = Linear(2, dtype="mixed_float16")
    outputs = layer(_x())
    assert outputs.dtype == "float16"
    assert layer.kernel.dtype == "float32"


@pytest.mark.parametrize(
    ("units", "error"), [(0, ValueError), (-3, ValueError), (2.5, TypeError), (True, TypeError)]
)
def test_bad_units_raise(units, error):
    with pytest.raises(error, match=rf"Received: units={units!r}"):
        Linear(units)


def test_unknown_last_dimension_and_bad_seed():
    with pytest.raises(ValueError, match=r"Linear needs a known last input dimension"):
        Linear(2).build((None, None))
    with pytest.raises(TypeError, match=r"Received: seed='0'"):
        Linear(2, seed="0")
