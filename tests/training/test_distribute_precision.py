"""Mixed precision in the Trainer: bfloat16/float16 policies, float32 outputs, the loss scale."""

import keras
import numpy as np
import pytest

from tfcraft.training import Trainer


def _build():
    init = keras.initializers.GlorotUniform
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(16, activation="tanh", kernel_initializer=init(seed=1)),
            keras.layers.Dense(1, kernel_initializer=init(seed=2)),
        ]
    )


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype("float32")
    y = np.sin(x[:, :1]) + 0.5 * x[:, 1:2] - 0.25 * x[:, 2:3] ** 2
    return x, y.astype("float32")


def _final_loss(mixed_precision):
    trainer = Trainer(
        _build,
        optimizer=keras.optimizers.Adam(0.01),
        loss="mse",
        seed=0,
        mixed_precision=mixed_precision,
    )
    history = trainer.fit(_data(), epochs=15, batch_size=32, verbose=0)
    return trainer, history.history


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_converges_within_five_percent_of_float32(policy):
    _, reference = _final_loss(None)
    trainer, history = _final_loss(policy)
    assert trainer.model.layers[0].compute_dtype == policy.removeprefix("mixed_")
    assert trainer.model.layers[-1].compute_dtype == "float32"  # output and loss in float32
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    assert reference["loss"][-1] < 0.5 * reference["loss"][0]  # it did train
    assert abs(history["loss"][-1] - reference["loss"][-1]) <= 0.05 * reference["loss"][-1]
    if policy == "mixed_float16":
        assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
        assert "loss_scale" in history
        # Clipping and the logged norm see unscaled gradients: the scale is 2**15.
        np.testing.assert_allclose(history["grad_norm"][0], reference["grad_norm"][0], rtol=0.05)


def test_float16_overflow_step_is_skipped_by_the_loss_scale():
    trainer = Trainer(
        _build,
        optimizer=keras.optimizers.SGD(0.001),
        loss="mse",
        seed=0,
        mixed_precision="mixed_float16",
    )
    x, y = _data()
    x, y = x[:32], y[:32] * 300.0  # float16 gradients times 2**15 overflow
    before = trainer.get_weights()
    history = trainer.fit((x, y), epochs=1, batch_size=32, verbose=0)
    assert history.history["nonfinite_steps"] == [1]
    assert history.history["loss_scale"] == [2.0**14]  # halved
    for a, b in zip(trainer.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)  # not applied
    history = trainer.fit((x, y), epochs=8, batch_size=32, verbose=0)
    scales = history.history["loss_scale"]
    assert scales[-1] < 2.0**14 and 0 in history.history["nonfinite_steps"]
    moved = [np.abs(a - b).max() for a, b in zip(trainer.get_weights(), before, strict=True)]
    assert max(moved) > 0 and all(np.isfinite(w).all() for w in trainer.get_weights())


def test_a_float32_model_is_refused_under_a_mixed_policy():
    with pytest.raises(ValueError, match="mixed_precision='mixed_bfloat16'"):
        Trainer(_build(), loss="mse", mixed_precision="mixed_bfloat16")
