"""Trainer vs `model.fit`: same model, weights, batch order, optimizer, clipping, accumulation."""

import keras
import numpy as np
import pytest

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
        # Keras counts micro-batches in `iterations`, which changes Adam's bias
        # correction; with SGD + momentum the update rule does not depend on it.
        (
            lambda **kw: keras.optimizers.SGD(momentum=0.9, **kw),
            {"global_clipnorm": 0.5, "gradient_accumulation_steps": 2},
            clipping.ByGlobalNorm(0.5),
            2,
        ),
    ],
    ids=["plain", "global_clipnorm", "clipnorm", "clipvalue", "accumulation+global_clipnorm"],
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
