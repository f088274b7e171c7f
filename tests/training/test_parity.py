"""Trainer vs `model.fit`: same model, weights, batch order, optimizer, clipping, accumulation."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcraft.training import Trainer, clipping

X = np.random.default_rng(0).normal(size=(64, 5)).astype("float32")
Y = (np.sin(X[:, :1]) + X[:, 1:2] ** 2).astype("float32")


def _model():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(1)]
    )


@pytest.mark.parametrize(
    ("make_optimizer", "keras_options", "clip", "accumulate_steps"),
    [
        (keras.optimizers.Adam, {}, None, 1),
        (keras.optimizers.Adam, {"global_clipnorm": 0.5}, clipping.ByGlobalNorm(0.5), 1),
        (keras.optimizers.Adam, {"clipnorm": 0.3}, clipping.ByNorm(0.3), 1),
        (keras.optimizers.Adam, {"clipvalue": 0.05}, clipping.ByValue(0.05), 1),
        (
            lambda **kw: keras.optimizers.SGD(momentum=0.9, **kw),
            {"global_clipnorm": 0.5, "gradient_accumulation_steps": 2},
            clipping.ByGlobalNorm(0.5),
            2,
        ),
        # Keras 3 (3.15) counts applied updates in `optimizer.iterations` under
        # accumulation (`_iterations // steps`), and Adam's bias correction reads it,
        # so Adam is comparable too. Only learning-rate *schedules* differ: Keras
        # evaluates them at the micro-batch count; no schedule here.
        (
            keras.optimizers.Adam,
            {"global_clipnorm": 0.5, "gradient_accumulation_steps": 2},
            clipping.ByGlobalNorm(0.5),
            2,
        ),
    ],
    ids=[
        "plain",
        "global_clipnorm",
        "clipnorm",
        "clipvalue",
        "sgd_accumulation+global_clipnorm",
        "adam_accumulation+global_clipnorm",
    ],
)
def test_same_weights_as_keras_fit(make_optimizer, keras_options, clip, accumulate_steps):
    reference = _model()
    reference.compile(
        optimizer=make_optimizer(learning_rate=0.05, **keras_options),
        loss=keras.losses.MeanSquaredError(),
        jit_compile=False,
    )
    ours = _model()
    ours.set_weights(reference.get_weights())
    reference_history = reference.fit(X, Y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    trainer = Trainer(
        ours,
        make_optimizer(learning_rate=0.05),
        loss=keras.losses.MeanSquaredError(),
        clip=clip,
        accumulate_steps=accumulate_steps,
        jit_compile=False,
    )
    history = trainer.fit((X, Y), batch_size=8, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(reference.get_weights(), ours.get_weights(), strict=True):
        np.testing.assert_allclose(b, a, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(
        history.history["loss"], reference_history.history["loss"], rtol=1e-5
    )
    assert not np.allclose(reference.get_weights()[0], _model().get_weights()[0])  # it trained


@pytest.mark.parametrize(
    ("keras_options", "clip"),
    [({}, None), ({"global_clipnorm": 0.5}, clipping.ByGlobalNorm(0.5))],
    ids=["plain", "global_clipnorm"],
)
def test_same_weights_as_keras_fit_under_xla(keras_options, clip):
    # The XLA path: Trainer(jit_compile=True) against model.fit(jit_compile=True).
    reference = _model()
    reference.compile(
        optimizer=keras.optimizers.Adam(learning_rate=0.05, **keras_options),
        loss=keras.losses.MeanSquaredError(),
        jit_compile=True,
    )
    ours = _model()
    ours.set_weights(reference.get_weights())
    reference_history = reference.fit(X, Y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    trainer = Trainer(
        ours,
        keras.optimizers.Adam(learning_rate=0.05),
        loss=keras.losses.MeanSquaredError(),
        clip=clip,
        jit_compile=True,
    )
    history = trainer.fit((X, Y), batch_size=8, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(reference.get_weights(), ours.get_weights(), strict=True):
        np.testing.assert_allclose(b, a, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(
        history.history["loss"], reference_history.history["loss"], rtol=1e-5
    )
    assert not np.allclose(reference.get_weights()[0], _model().get_weights()[0])  # it trained


def _numpy_adam_on_large_batches(weights, batch_size, epochs, lr, clip_norm):
    """Large-batch Adam by hand: TF only for the gradients, the update in NumPy (float64).

    Keras' Adam: m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2,
    w -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps), t = 1, 2, ...
    """
    beta_1, beta_2, epsilon = 0.9, 0.999, 1e-7
    model = _model()
    model.set_weights(weights)
    w = [np.asarray(v, np.float64) for v in model.get_weights()]
    m, v = [np.zeros_like(p) for p in w], [np.zeros_like(p) for p in w]
    t = 0
    for _ in range(epochs):
        for start in range(0, len(X), batch_size):
            model.set_weights([p.astype("float32") for p in w])
            with tf.GradientTape() as tape:
                prediction = model(X[start : start + batch_size], training=True)
                loss = tf.reduce_mean(tf.square(prediction - Y[start : start + batch_size]))
            grads = [g.numpy().astype(np.float64) for g in tape.gradient(loss, model.weights)]
            norm = np.sqrt(sum(np.sum(g**2) for g in grads))
            grads = [g * min(1.0, clip_norm / norm) for g in grads]
            t += 1
            rate = lr * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
            for i, g in enumerate(grads):
                m[i] = beta_1 * m[i] + (1 - beta_1) * g
                v[i] = beta_2 * v[i] + (1 - beta_2) * g**2
                w[i] = w[i] - rate * m[i] / (np.sqrt(v[i]) + epsilon)
    return w, t


def test_adam_with_accumulation_is_large_batch_adam():
    # Accumulating 2 micro-batches of 8 must equal Adam on batches of 16 with the
    # averaged gradient clipped to global norm 0.5 (see training/steps.py): checked
    # against the hand-written NumPy Adam above and against Keras `fit` on the
    # large batches themselves (no Keras accumulation involved).
    initial = _model().get_weights()
    reference = _model()
    reference.compile(
        optimizer=keras.optimizers.Adam(learning_rate=0.05, global_clipnorm=0.5),
        loss=keras.losses.MeanSquaredError(),
        jit_compile=False,
    )
    reference.fit(X, Y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    ours = _model()
    trainer = Trainer(
        ours,
        keras.optimizers.Adam(learning_rate=0.05),
        loss=keras.losses.MeanSquaredError(),
        clip=clipping.ByGlobalNorm(0.5),
        accumulate_steps=2,
        jit_compile=False,
    )
    trainer.fit((X, Y), batch_size=8, epochs=2, shuffle=False, verbose=0)
    by_hand, num_updates = _numpy_adam_on_large_batches(initial, 16, 2, 0.05, 0.5)
    assert int(trainer.optimizer.iterations) == num_updates == 8  # one per applied update
    for a, b, c in zip(reference.get_weights(), ours.get_weights(), by_hand, strict=True):
        np.testing.assert_allclose(b, c, atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(b, a, atol=1e-5, rtol=1e-5)
    assert not np.allclose(by_hand[0], initial[0], atol=1e-3)  # it trained
