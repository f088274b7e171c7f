"""The bugs a new user hit (issue #9, section 2), each with a test that failed before the fix,
and the compiled `tf.data` loop: same training as the plain loop, nothing retraced."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcraft import metrics as tfcraft_metrics
from tfcraft.training import EarlyStopping, Trainer
from tfcraft.training.early_stopping import infer_mode


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)]
    )


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    return x, (x @ np.array([[1.0], [-2.0], [0.5]], "float32")).astype("float32")


def _counted_mse(counter):
    def mse(y_true, y_pred):  # runs only while TF traces
        counter.append(1)
        return keras.ops.mean(keras.ops.square(y_true - y_pred), axis=-1)

    return mse


# ------------------------------------------------------------ custom train_step + evaluate
def test_custom_train_step_then_evaluate_uses_the_loss():
    def sgd_step(model, batch):
        x, y = batch
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x, training=True) - y))
        grads = tape.gradient(loss, model.trainable_variables)
        for grad, variable in zip(grads, model.trainable_variables, strict=True):
            variable.assign_sub(0.05 * grad)
        return {"loss": loss}

    x, y = _data()
    model = _model()
    trainer = Trainer(model, loss="mse", metrics=["mae"], train_step=sgd_step, seed=0)
    trainer.fit((x, y), epochs=2, batch_size=8, verbose=0)
    results = trainer.evaluate((x, y), batch_size=8)  # was AttributeError: no `loss_fn`
    predictions = model.predict(x, verbose=0)
    np.testing.assert_allclose(results["loss"], np.mean((predictions - y) ** 2), rtol=1e-5)
    np.testing.assert_allclose(
        results["mean_absolute_error"], np.mean(np.abs(predictions - y)), rtol=1e-5
    )


def test_train_step_only_trainer_says_evaluate_needs_a_loss():
    trainer = Trainer(_model(), optimizer=None, train_step=lambda m, b: {"loss": 0.0}, seed=0)
    with pytest.raises(ValueError, match=r"need `loss` or `loss_fn`.*Received: loss=None"):
        trainer.evaluate(_data())


# ------------------------------------------------------------ metric directions
@pytest.mark.parametrize(
    ("monitor", "expected"),
    [
        ("val_brier_score", "min"),  # was "max": guessed from the word "score"
        ("val_expected_calibration_error", "min"),
        ("val_precision", "max"),
        ("val_loss", "min"),
        ("val_accuracy", "max"),
    ],
)
def test_early_stopping_direction_of_names(monitor, expected):
    assert infer_mode(monitor) == expected


def test_declared_direction_beats_the_name():
    class Goodness(keras.metrics.Mean):
        direction = "up"

    metric = Goodness(name="loss_of_nerve")  # the name alone says "min"
    assert infer_mode("val_loss_of_nerve", [metric]) == "max"
    brier = tfcraft_metrics.BrierScore()
    assert infer_mode(f"val_{brier.name}", [brier]) == "min"


def test_early_stopping_on_brier_score_stops_when_it_rises():
    x, y = _data(64)
    labels = (y > 0).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    stopper = EarlyStopping("val_brier_score", patience=1)
    trainer = Trainer(
        model,
        keras.optimizers.SGD(0.5),
        loss="binary_crossentropy",
        metrics=[tfcraft_metrics.BrierScore()],
        callbacks=[stopper],
        seed=0,
    )
    history = trainer.fit((x, labels), epochs=40, batch_size=16, validation_data=(x, labels))
    scores = history.history["val_brier_score"]
    # The best epoch is the minimum, as it must be for a score that goes down.
    assert stopper.best == pytest.approx(min(scores), rel=1e-6)
    assert stopper.best_epoch == int(np.argmin(scores))


# ------------------------------------------------------------ KL weight is recorded
def test_kl_weight_scheduler_value_reaches_history():
    from tfcraft.bayes import KLWeightScheduler, LinearWarmup
    from tfcraft.layers import DenseFlipout

    x, y = _data(32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), DenseFlipout(4, seed=0), keras.layers.Dense(1)])
    scheduler = KLWeightScheduler(LinearWarmup(4), update="epoch")
    trainer = Trainer(model, loss="mse", callbacks=[scheduler], seed=0, jit_compile=False)
    history = trainer.fit((x, y), epochs=4, batch_size=16, verbose=0)
    weights = history.history["kl_weight"]  # was missing: History read the logs first
    assert len(weights) == 4
    np.testing.assert_allclose(weights, [0.0, 0.25, 0.5, 0.75])  # a linear warm-up


# ------------------------------------------------------------ predict is cached
def test_predict_in_a_loop_traces_once_per_batch_shape():
    calls = []

    class Counting(keras.layers.Layer):
        def call(self, inputs):
            calls.append(1)  # runs while tracing (and once in eager build)
            return inputs * 2.0

    model = keras.Sequential([keras.Input((3,)), Counting()])
    trainer = Trainer(model, loss="mse", seed=0)
    x = np.ones((8, 3), "float32")
    trainer.predict(x, batch_size=8)
    after_first = len(calls)
    for _ in range(5):
        np.testing.assert_allclose(trainer.predict(x, batch_size=8), 2 * x)
    assert len(calls) == after_first


# ------------------------------------------------------------ unlabelled data
def test_fit_on_unlabelled_x_with_a_density_loss_fn():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(256, 2)) * [2.0, 0.5] + [1.0, -1.0]).astype("float32")

    class Gaussian(keras.Model):
        def build(self, input_shape):
            self.loc = self.add_weight(shape=(2,), initializer="zeros")
            self.log_scale = self.add_weight(shape=(2,), initializer="zeros")

        def call(self, inputs):
            return inputs

    def negative_log_likelihood(model, batch, training):
        (features,) = batch
        z = (features - model.loc) / tf.exp(model.log_scale)
        nll = tf.reduce_mean(tf.reduce_sum(0.5 * z**2 + model.log_scale, axis=-1))
        return nll, {}

    model = Gaussian()
    model.build((None, 2))
    trainer = Trainer(model, keras.optimizers.Adam(0.05), loss_fn=negative_log_likelihood, seed=0)
    trainer.fit(x, epochs=60, batch_size=64, verbose=0)
    np.testing.assert_allclose(model.loc.numpy(), x.mean(0), atol=0.05)
    np.testing.assert_allclose(np.exp(model.log_scale.numpy()), x.std(0), rtol=0.05)


def test_loss_on_unlabelled_x_is_a_clear_error():
    trainer = Trainer(_model(), loss="mse", seed=0)
    with pytest.raises(ValueError, match=r"no targets \(only `x`\).*loss_fn"):
        trainer.fit(np.ones((8, 3), "float32"), verbose=0)


# ------------------------------------------------------------ best weights survive a resume
def test_restore_best_weights_after_resume(tmp_path):
    x, y = _data(32)
    x_val, y_val = _data(16, seed=1)
    y_val = y_val + np.random.default_rng(3).normal(size=y_val.shape).astype("float32") * 2

    def run(directory, epochs, resume=False, model_seed=0):
        stopper = EarlyStopping("val_loss", patience=100, restore_best_weights=True)
        trainer = Trainer(
            _model(model_seed),
            keras.optimizers.SGD(0.2),
            loss="mse",
            seed=0,
            callbacks=[stopper],
            checkpoint_dir=directory,
            epochs_per_execution=1,
        )
        trainer.fit(
            (x, y),
            epochs=epochs,
            batch_size=8,
            validation_data=(x_val, y_val),
            resume=resume,
            verbose=0,
        )
        return trainer, stopper

    full, full_stopper = run(tmp_path / "full", 12)
    run(tmp_path / "split", 6)
    resumed, resumed_stopper = run(tmp_path / "split", 12, resume=True, model_seed=5)
    assert resumed_stopper.best_epoch == full_stopper.best_epoch
    for a, b in zip(full.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------ tf.data: compiled chunks
def _dataset(x, y, batch_size, drop_remainder=False):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size, drop_remainder)


@pytest.mark.parametrize("rows", [40, 37])  # with and without a partial last batch
def test_xla_chunks_train_like_the_plain_loop(rows):
    x, y = _data(rows)
    weights = []
    for jit in (True, False):
        trainer = Trainer(
            _model(),
            keras.optimizers.Adam(0.01),
            loss="mse",
            clip="global_norm:1.0",
            seed=0,
            jit_compile=jit,
        )
        history = trainer.fit(_dataset(x, y, 8), epochs=3, verbose=0)
        assert trainer._loop.jit_compile is jit
        assert trainer.step == 3 * -(-rows // 8)
        weights.append((trainer.get_weights(), history.history["loss"]))
    (xla_weights, xla_loss), (plain_weights, plain_loss) = weights
    np.testing.assert_allclose(xla_loss, plain_loss, rtol=1e-5)
    for a, b in zip(xla_weights, plain_weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_xla_chunks_keep_the_order_of_irregular_batches():
    """Batches of changing sizes: every batch is trained once, in the dataset's order."""
    x, y = _data(30)
    sizes = [4, 4, 3, 4, 5, 4, 4, 2]
    starts = np.cumsum([0, *sizes[:-1]])
    batches = [(x[s : s + n], y[s : s + n]) for s, n in zip(starts, sizes, strict=True)]

    def generator():
        yield from batches

    spec = (tf.TensorSpec((None, 3), tf.float32), tf.TensorSpec((None, 1), tf.float32))
    dataset = tf.data.Dataset.from_generator(generator, output_signature=spec)
    reference_model = _model()
    reference_model.compile(keras.optimizers.SGD(0.1), "mse")
    for batch_x, batch_y in batches:
        reference_model.train_on_batch(batch_x, batch_y)
    trainer = Trainer(_model(), keras.optimizers.SGD(0.1), loss="mse", seed=0, jit_compile=True)
    trainer.fit(dataset, epochs=1, verbose=0)
    assert trainer.step == len(sizes)
    for a, b in zip(trainer.get_weights(), reference_model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("jit", [True, False])
def test_repeated_fit_on_a_dataset_traces_nothing(jit):
    x, y = _data()
    traces = []
    trainer = Trainer(_model(), "sgd", loss=_counted_mse(traces), seed=0, jit_compile=jit)
    dataset = _dataset(x, y, 8).prefetch(2)
    trainer.fit(dataset, epochs=1, verbose=0, validation_data=dataset)
    loop, first = trainer._loop, len(traces)
    for _ in range(3):
        trainer.fit(dataset, epochs=1, verbose=0, validation_data=dataset)
    assert trainer._loop is loop
    assert len(traces) == first


def test_dataset_with_random_layers_skips_xla_under_auto():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dropout(0.2, seed=1), keras.layers.Dense(1)]
    )
    trainer = Trainer(model, "sgd", loss="mse", seed=0)
    trainer.fit(_dataset(*_data(), 8), verbose=0)
    assert trainer._loop.jit_compile is False


# ------------------------------------------------------------ finished iterators
def test_retired_iterators_are_deleted_off_the_calling_thread():
    import threading

    from tfcraft.training.iterator_loop import RetiredIterators

    deleted_on = []

    class Tracked:
        def __del__(self):
            deleted_on.append(threading.current_thread().name)

    retired = RetiredIterators()
    retired.retire(Tracked())
    retired.join()
    assert deleted_on == ["tfcraft-retired-iterators"]


def test_fit_on_a_dataset_lets_go_of_its_iterators_in_the_background():
    # Deleting a finished tf.data iterator blocked 0.1-1.3 s on the training thread.
    import threading
    import weakref

    from tfcraft.training.iterator_loop import RETIRED_ITERATORS

    x, y = _data()
    trainer = Trainer(_model(), "sgd", loss="mse", seed=0)
    deleted_on = []
    iterate = trainer._distribution.iterate

    def tracked_iterate(dataset):
        iterator = iterate(dataset)
        weakref.finalize(iterator, lambda: deleted_on.append(threading.current_thread().name))
        return iterator

    trainer._distribution.iterate = tracked_iterate
    trainer.fit(_dataset(x, y, 8), epochs=3, verbose=0)
    RETIRED_ITERATORS.join()
    assert deleted_on == ["tfcraft-retired-iterators"] * 3


def test_a_generator_object_is_not_read_ahead_past_an_epoch():
    # A callable's generator is prefetched (as Keras does); one generator object is
    # not, so epochs cut by steps_per_epoch lose no batch.
    x, y = _data(n=80)
    yielded = []

    def batches():
        for start in range(0, 80, 8):
            yielded.append(start)
            yield x[start : start + 8], y[start : start + 8]

    trainer = Trainer(_model(), "sgd", loss="mse", seed=0)
    trainer.fit(batches(), epochs=2, steps_per_epoch=3, verbose=0)
    assert trainer.step == 6
    assert yielded == [0, 8, 16, 24, 32, 40]


def test_a_callable_generator_trains_like_the_same_dataset():
    x, y = _data(n=48)

    def batches():
        for start in range(0, 48, 8):
            yield x[start : start + 8], y[start : start + 8]

    from_callable = Trainer(_model(), "sgd", loss="mse", seed=0)
    from_callable.fit(batches, epochs=3, verbose=0)
    from_dataset = Trainer(_model(), "sgd", loss="mse", seed=0)
    from_dataset.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(8), epochs=3, verbose=0)
    for a, b in zip(from_callable.get_weights(), from_dataset.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
