"""NaN and Inf injected for real: a poisoned batch, an exploding learning rate, NaN in the model.

Under `NanGuard` no non-finite value reaches the weights, BatchNorm statistics,
the running loss or a checkpoint; `"skip"` equals training without the poisoned
batch, bit for bit; `"rollback"` restores the last checkpoint and lowers the
learning rate; `"raise"` names the step and the tensor.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfcraft
from tfcraft.training import NanGuard, Trainer
from tfcraft.training.resume import TrainingCheckpoints

BATCH = 8


def data(poison_batch=None, value=np.nan, steps=6):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH * steps, 3)).astype("float32")
    y = (x[:, :1] - 2 * x[:, 1:2]).astype("float32")
    if poison_batch is not None:
        x[poison_batch * BATCH + 3, 1] = value
    return x, y


def drop_batch(x, y, index):
    keep = np.r_[: index * BATCH, (index + 1) * BATCH : len(x)]
    return x[keep], y[keep]


def bn_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(8),
            keras.layers.BatchNormalization(),
            keras.layers.Activation("relu"),
            keras.layers.Dense(1),
        ]
    )


def checkpoints_are_finite(directory):
    names = sorted(directory.glob("ckpt-*.index"))
    assert names
    for index in names:
        reader = tf.train.load_checkpoint(str(index.with_suffix("")))
        for name in reader.get_variable_to_shape_map():
            value = np.asarray(reader.get_tensor(name))
            if np.issubdtype(value.dtype, np.floating):
                assert np.all(np.isfinite(value)), (index, name)


@pytest.mark.fault("nan", cases=2)
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_skip_poisoned_batch_equals_training_without_it(tmp_path, value):
    tfcraft.enable_determinism(0)
    x, y = data(poison_batch=2, value=value)
    guard = NanGuard(policy="skip")
    poisoned = Trainer(
        bn_model(),
        keras.optimizers.Adam(0.01),
        loss="mse",
        seed=0,
        callbacks=[guard],
        checkpoint_dir=tmp_path,
        checkpoint_every=1,
        jit_compile=False,
    )
    history = poisoned.fit((x, y), epochs=2, batch_size=BATCH, shuffle=False, verbose=0)
    clean = Trainer(bn_model(), keras.optimizers.Adam(0.01), loss="mse", seed=0, jit_compile=False)
    expected = clean.fit(drop_batch(x, y, 2), epochs=2, batch_size=BATCH, shuffle=False, verbose=0)
    assert guard.skipped_steps == 2 and history.history["nonfinite_steps"] == [1, 1]
    # Weights, BatchNorm moving statistics and the optimizer never saw the batch.
    for a, b in zip(clean.get_weights(), poisoned.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(poisoned.optimizer.iterations) == int(clean.optimizer.iterations) == 10
    # Nor did the running loss (weighted by examples: the same 40 examples).
    np.testing.assert_allclose(history.history["loss"], expected.history["loss"], rtol=1e-6)
    assert "nonfinite_tensor" not in history.history  # the guard's diagnostics are consumed
    checkpoints_are_finite(tmp_path)


class SignSGD(tf.Module):
    """A custom `train_step` that writes its own update (and its own NaN)."""

    def __call__(self, model, batch):
        x, y = batch
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x, training=True) - y))
        grads = tape.gradient(loss, model.trainable_variables)
        for grad, variable in zip(grads, model.trainable_variables, strict=True):
            variable.assign_sub(0.01 * tf.sign(grad))
        return {"loss": loss}


@pytest.mark.fault("nan")
def test_skip_also_undoes_a_custom_train_step(tmp_path):
    x, y = data(poison_batch=1)

    def fit(xy, callbacks):
        trainer = Trainer(
            bn_model(), None, train_step=SignSGD(), seed=0, callbacks=callbacks, jit_compile=False
        )
        trainer.fit(xy, epochs=1, batch_size=BATCH, shuffle=False, verbose=0)
        return trainer

    guard = NanGuard(policy="skip")
    poisoned = fit((x, y), [guard])
    clean = fit(drop_batch(x, y, 1), [])
    assert guard.skipped_steps == 1
    for a, b in zip(clean.get_weights(), poisoned.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # Without the guard the same step poisons the weights: the injection is real.
    unguarded = fit((x, y), [])
    assert not all(np.all(np.isfinite(w)) for w in unguarded.get_weights())


@pytest.mark.fault("nan")
def test_raise_names_the_step_and_the_loss():
    x, y = data(poison_batch=2)
    trainer = Trainer(bn_model(), "sgd", loss="mse", seed=0, callbacks=[NanGuard()])
    message = r"Non-finite loss at global step 3 \(epoch 0, batch 2\)"
    with pytest.raises(FloatingPointError, match=message):
        trainer.fit((x, y), epochs=1, batch_size=BATCH, shuffle=False, verbose=0)
    assert all(np.all(np.isfinite(w)) for w in trainer.get_weights())


@pytest.mark.fault("nan")
def test_raise_names_the_first_nonfinite_gradient():
    # sqrt(|e|) is finite at e = 0 but its gradient is not: the loss stays finite.
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, kernel_initializer="zeros")])

    def loss_fn(model, batch, training):
        x, y = batch
        return tf.reduce_mean(tf.sqrt(tf.abs(model(x, training=training) - y))), {}

    x = np.ones((16, 2), "float32")
    y = np.ones((16, 1), "float32")
    y[8:] = 0.0  # the second batch meets y_pred == y == 0 exactly (the bias is still 0)
    model.layers[0].bias.assign([0.0])
    trainer = Trainer(
        model, keras.optimizers.SGD(0.0), loss_fn=loss_fn, seed=0, callbacks=[NanGuard()]
    )
    with pytest.raises(FloatingPointError, match=r"gradient of '.*kernel' at global step 2"):
        trainer.fit((x, y), epochs=1, batch_size=8, shuffle=False, verbose=0)


class NanBelow(keras.layers.Layer):
    """NaN produced inside the model: `log` of the first feature (negative -> NaN)."""

    def call(self, x):
        return tf.concat([tf.math.log(x[:, :1] + 10.0), x[:, 1:]], axis=1)


@pytest.mark.fault("nan")
def test_nan_inside_the_model_is_skipped_and_logged(tmp_path):
    x, y = data()
    x[20, 0] = -50.0  # batch 2 of epoch 0: log of a negative number inside the model
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), NanBelow(), keras.layers.Dense(1)])
    guard = NanGuard(policy="skip")
    trainer = Trainer(
        model,
        "adam",
        loss="mse",
        seed=0,
        callbacks=[guard],
        checkpoint_dir=tmp_path,
        checkpoint_every=2,
    )
    history = trainer.fit((x, y), epochs=3, batch_size=BATCH, shuffle=False, verbose=0)
    assert guard.skipped_steps == 3 and history.history["nonfinite_steps"] == [1, 1, 1]
    assert all(np.isfinite(history.history["loss"]))
    assert all(np.all(np.isfinite(w)) for w in trainer.get_weights())
    checkpoints_are_finite(tmp_path)


@pytest.mark.fault("nan")
def test_rollback_recovers_from_an_exploding_learning_rate(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    guard = NanGuard(policy="rollback", lr_factor=1e-5, max_rollbacks=2)
    trainer = Trainer(
        model,
        keras.optimizers.SGD(0.01),
        loss="mse",
        seed=0,
        callbacks=[guard],
        checkpoint_dir=tmp_path,
        steps_per_execution=1,
    )
    trainer.fit(data(steps=8), epochs=1, batch_size=BATCH, verbose=0)  # checkpoint at step 8
    good = trainer.get_weights()
    trainer.optimizer.learning_rate = 1e3  # explodes: the weights reach inf within the epoch
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = trainer.fit(data(steps=40), epochs=1, batch_size=BATCH, verbose=0)
    assert guard.rollbacks == 1
    assert any("restored the checkpoint of step 8" in str(w.message) for w in caught)
    assert float(trainer.optimizer.learning_rate) == pytest.approx(0.01 * 1e-5, rel=1e-4)
    assert all(np.all(np.isfinite(w)) for w in trainer.get_weights())
    assert np.isfinite(history.history["loss"][-1])
    # Back where the rollback returned to, then barely moved at the lowered rate.
    moved = [np.max(np.abs(a - b)) for a, b in zip(good, trainer.get_weights(), strict=True)]
    assert max(moved) < 1e-3
    checkpoints_are_finite(tmp_path)


def rollback_trainer(directory, callbacks=(), checkpoint_every=None):
    return Trainer(
        bn_model(),
        keras.optimizers.Adam(0.01),
        loss="mse",
        seed=0,
        callbacks=list(callbacks),
        checkpoint_dir=directory,
        checkpoint_every=checkpoint_every,
        steps_per_execution=1,
        jit_compile=False,
    )


def assert_same_weights(a, b):
    for u, v in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(u, v)


@pytest.mark.fault("nan")
def test_rollback_continues_after_the_bad_batch_without_replaying(tmp_path):
    """Documented: restore ckpt-2, drop the updates since (batch 2) and the bad batch 3,
    go on with batches 4 and 5 at the lowered rate; the global step keeps counting."""
    tfcraft.enable_determinism(0)
    x, y = data(poison_batch=3)
    guard = NanGuard(policy="rollback", lr_factor=0.5)
    rolled = rollback_trainer(tmp_path, [guard], checkpoint_every=2)
    with pytest.warns(RuntimeWarning, match="restored the checkpoint of step 2"):
        history = rolled.fit((x, y), epochs=1, batch_size=BATCH, shuffle=False, verbose=0)
    assert guard.rollbacks == 1 and history.history["nonfinite_steps"] == [1]
    assert rolled.step == 6 and int(rolled.optimizer.iterations) == 4  # 2 updates dropped
    # The same as: batches 0-1, then the learning rate halved, then batches 4-5.
    reference = rollback_trainer(None)
    first = reference.fit((x[:16], y[:16]), batch_size=BATCH, shuffle=False, verbose=0)
    reference.optimizer.learning_rate = 0.005
    rest = reference.fit((x[32:], y[32:]), batch_size=BATCH, shuffle=False, verbose=0)
    assert_same_weights(rolled, reference)  # BatchNorm statistics included
    # The epoch's loss is the mean over the four batches whose updates were kept.
    kept = (first.history["loss"][0] + rest.history["loss"][0]) / 2
    np.testing.assert_allclose(history.history["loss"][0], kept, rtol=1e-6)
    checkpoints_are_finite(tmp_path)


@pytest.mark.fault("nan")
def test_rollback_to_an_earlier_epoch_starts_the_running_loss_afresh(tmp_path):
    tfcraft.enable_determinism(0)
    x, y = data()
    guard = NanGuard(policy="rollback", lr_factor=0.5)
    rolled = rollback_trainer(tmp_path, [guard])  # checkpoints at epoch ends only
    rolled.fit((x, y), epochs=1, batch_size=BATCH, shuffle=False, verbose=0)  # ckpt-6
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "already holds checkpoints", "restored ..."
        history = rolled.fit(
            data(poison_batch=2), epochs=1, batch_size=BATCH, shuffle=False, verbose=0
        )
    assert guard.rollbacks == 1 and rolled.step == 12
    reference = rollback_trainer(None)
    reference.fit((x, y), epochs=1, batch_size=BATCH, shuffle=False, verbose=0)
    reference.optimizer.learning_rate = 0.005
    rest = reference.fit((x[24:], y[24:]), batch_size=BATCH, shuffle=False, verbose=0)
    assert_same_weights(rolled, reference)
    # Only batches 3-5 were kept this epoch; the first epoch's losses are not mixed in.
    np.testing.assert_allclose(history.history["loss"][0], rest.history["loss"][0], rtol=1e-6)


@pytest.mark.fault("nan")
def test_rollback_is_bounded_and_needs_a_checkpoint(tmp_path):
    x, y = data(poison_batch=0)
    trainer = Trainer(
        bn_model(),
        "sgd",
        loss="mse",
        seed=0,
        callbacks=[NanGuard(policy="rollback")],
        checkpoint_dir=tmp_path,
        checkpoint_every=4,
    )
    with pytest.raises(FloatingPointError, match="no checkpoint to restore"):
        trainer.fit((x, y), epochs=1, batch_size=BATCH, shuffle=False, verbose=0)
    x, y = data()
    y[:] = np.nan  # every step is bad: each rollback meets NaN again
    guard = NanGuard(policy="rollback", max_rollbacks=2)
    trainer = Trainer(
        bn_model(),
        "sgd",
        loss="mse",
        seed=0,
        callbacks=[guard],
        checkpoint_dir=tmp_path / "second",
        checkpoint_every=1,
    )
    clean = data()
    trainer.fit(clean, epochs=1, batch_size=BATCH, verbose=0)
    with (
        pytest.warns(RuntimeWarning, match="rollback"),
        pytest.raises(FloatingPointError, match=r"after 2 rollback\(s\) \(max_rollbacks=2\)"),
    ):
        trainer.fit((x, y), epochs=2, batch_size=BATCH, resume=True, verbose=0)
    assert guard.rollbacks == 2


@pytest.mark.fault("nan")
def test_no_checkpoint_is_written_with_nonfinite_weights(tmp_path):
    x, y = data(poison_batch=3)
    trainer = Trainer(
        bn_model(),
        keras.optimizers.SGD(0.01),
        loss="mse",
        seed=0,
        checkpoint_dir=tmp_path,
        checkpoint_every=2,
        steps_per_execution=1,
    )
    with pytest.warns(RuntimeWarning, match=r"Not writing checkpoint ckpt-4 .* is not finite"):
        trainer.fit((x, y), epochs=1, batch_size=BATCH, shuffle=False, verbose=0)
    assert not all(np.all(np.isfinite(w)) for w in trainer.get_weights())  # no guard: NaN
    assert TrainingCheckpoints(tmp_path).latest_metadata()["step"] == 2
    checkpoints_are_finite(tmp_path)
