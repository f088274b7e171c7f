import keras
import numpy as np
import pytest
import tensorflow as tf

import tfcraft
from tfcraft.training import Callback, Trainer


def _model(seed=0, dropout=False):
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((3,)), keras.layers.Dense(8, activation="tanh")]
    if dropout:
        layers.append(keras.layers.Dropout(0.2, seed=seed))
    return keras.Sequential([*layers, keras.layers.Dense(1)])


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    return x, (x @ np.array([[1.0], [-2.0], [0.5]], "float32")).astype("float32")


def _trainer(*args, **kwargs):
    """A Trainer without XLA: compiling is the slow part of these tests."""
    kwargs.setdefault("jit_compile", False)
    return Trainer(*args, **kwargs)


class Recorder(Callback):
    def __init__(self):
        super().__init__()
        self.events, self.batch_logs, self.epoch_logs, self.params = [], [], [], None

    def on_train_begin(self, logs=None):
        self.params = dict(self.trainer.params)

    def on_train_batch_end(self, batch, logs=None):
        self.events.append(batch)
        self.batch_logs.append(dict(logs))

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_logs.append(dict(logs))


@pytest.fixture(scope="module")
def trained():
    """One small run shared by the tests that only read its results."""
    x, y = _data()
    recorder = Recorder()
    trainer = Trainer(
        _model(),
        keras.optimizers.Adam(0.05),
        loss=keras.losses.MeanSquaredError(),
        metrics=[keras.metrics.MeanAbsoluteError()],
        clip=tfcraft.training.clipping.ByGlobalNorm(1.0),
        seed=0,
        callbacks=[recorder],
        jit_compile=False,
    )
    history = trainer.fit((x, y), epochs=6, batch_size=16, validation_data=(x, y), verbose=0)
    return trainer, history, recorder


def test_fit_learns_and_returns_history(trained):
    trainer, history, _ = trained
    losses = history.history["loss"]
    assert len(losses) == 6
    assert losses[-1] < 0.5 * losses[0]
    assert history is trainer.history
    assert trainer.epoch == 5
    assert trainer.step == 6 * 3  # 40 rows / 16: two full batches and the partial one


def test_logs_follow_the_callback_contract(trained):
    _, history, recorder = trained
    assert recorder.params == {"epochs": 6, "steps": 3, "verbose": 0}
    expected = {"loss", "mean_absolute_error", "grad_norm", "learning_rate", "nonfinite_steps"}
    assert expected <= set(recorder.batch_logs[0])
    assert all(isinstance(v, float | int) for v in recorder.batch_logs[0].values())
    assert {"val_loss", "val_mean_absolute_error"} <= set(recorder.epoch_logs[0])
    assert recorder.epoch_logs[-1]["loss"] == history.history["loss"][-1]
    np.testing.assert_allclose(recorder.batch_logs[0]["learning_rate"], 0.05, rtol=1e-6)


def test_evaluate_and_predict(trained):
    trainer, history, _ = trained
    x, y = _data()
    results = trainer.evaluate((x, y), batch_size=7)
    np.testing.assert_allclose(results["loss"], history.history["val_loss"][-1], rtol=1e-5)
    predictions = trainer.predict(x, batch_size=16)
    assert isinstance(predictions, np.ndarray)
    np.testing.assert_allclose(predictions, trainer.model(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results["loss"], np.mean((predictions - y) ** 2), rtol=1e-4)


def test_partial_batch_is_trained_unless_dropped():
    x, y = _data(10)
    for drop, steps in [(False, 3), (True, 2)]:
        recorder = Recorder()
        trainer = _trainer(
            _model(), "sgd", loss="mse", seed=0, callbacks=[recorder], steps_per_execution=1
        )
        trainer.fit((x, y), batch_size=4, drop_remainder=drop, verbose=0)
        assert trainer.step == steps
        assert recorder.events == list(range(steps))


def test_steps_per_execution_and_checkpoint_every_set_the_call_granularity(tmp_path):
    x, y = _data(40)
    recorder = Recorder()
    trainer = _trainer(
        _model(),
        "sgd",
        loss="mse",
        seed=0,
        callbacks=[recorder],
        checkpoint_dir=tmp_path,
        checkpoint_every=4,
        jit_compile=False,
    )
    trainer.fit((x, y), epochs=2, batch_size=4, verbose=0)  # 10 steps per epoch
    # Calls end at every 4th global step and at every epoch end.
    assert recorder.events == [3, 7, 9, 1, 5, 9]


def test_dataset_generator_and_callable_inputs_train_the_same_steps():
    x, y = _data(12)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)

    def batches():
        for i in range(0, 12, 4):
            yield x[i : i + 4], y[i : i + 4]

    for data, epochs, steps in [(dataset, 2, 6), (batches, 2, 6), (batches(), 1, 3)]:
        trainer = _trainer(_model(), "sgd", loss="mse", seed=0, steps_per_execution=2)
        history = trainer.fit(data, epochs=epochs, verbose=0)
        assert trainer.step == steps
        assert len(history.history["loss"]) == epochs


def test_a_generator_object_runs_out_after_one_epoch():
    x, y = _data(8)
    trainer = _trainer(_model(), "sgd", loss="mse", seed=0)
    with pytest.warns(UserWarning, match=r"ran out of batches"):
        history = trainer.fit(iter([(x, y)]), epochs=3, verbose=0)
    assert len(history.history["loss"]) == 1


def test_sample_weights_are_used():
    x, y = _data(8)
    weights = np.zeros(8, "float32")
    trainer = _trainer(_model(), "sgd", loss="mse", seed=0)
    before = trainer.get_weights()
    history = trainer.fit((x, y, weights), batch_size=8, verbose=0)
    assert history.history["loss"] == [0.0]
    for a, b in zip(before, trainer.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_callback_can_stop_training(stop_after_calls):
    x, y = _data(40)
    trainer = _trainer(
        _model(), "sgd", loss="mse", seed=0, callbacks=[stop_after_calls(2)], steps_per_execution=1
    )
    history = trainer.fit((x, y), epochs=5, batch_size=4, verbose=0)
    assert trainer.step == 2
    assert len(history.history["loss"]) == 1  # on_epoch_end still fires, as in Keras


class SkipNonfinite(Callback):
    skips_nonfinite_updates = True


def test_nonfinite_updates_are_skipped_when_a_callback_asks():
    x, y = _data(16)
    x[5, 0] = np.nan  # poisons the second batch of 4 (no shuffling)
    # Skipped: only the poisoned batch; applied: it poisons the weights, then batches 3, 4.
    for callbacks, finite, nonfinite in [([SkipNonfinite()], True, 1), ([], False, 3)]:
        recorder = Recorder()
        trainer = _trainer(_model(), "sgd", loss="mse", seed=0, callbacks=[*callbacks, recorder])
        trainer.fit((x, y), batch_size=4, shuffle=False, verbose=0)
        assert recorder.epoch_logs[-1]["nonfinite_steps"] == nonfinite
        assert np.all(np.isfinite(trainer.get_weights()[0])) == finite


def test_custom_loss_fn_through_the_trainer():
    x, y = _data(16)

    def loss_fn(model, batch, training):
        x, y = batch
        y_pred = model(x, training=training)
        return tf.reduce_mean(tf.abs(y - y_pred)), {"y_pred": y_pred}

    trainer = _trainer(_model(), "adam", loss_fn=loss_fn, metrics=["mae"], seed=0)
    history = trainer.fit((x, y), epochs=2, batch_size=8, verbose=0)
    np.testing.assert_allclose(
        history.history["loss"], history.history["mean_absolute_error"], rtol=1e-5
    )
    assert set(trainer.evaluate((x, y))) == {"loss", "mean_absolute_error"}


class TwoOptimizerStep(tf.Module):
    """GAN-style: two optimizers update two halves of the model."""

    def __init__(self, model):
        super().__init__()
        self.first = keras.optimizers.SGD(0.1)
        self.second = keras.optimizers.Adam(0.01)
        self.first_vars = model.layers[0].trainable_variables
        self.second_vars = model.layers[-1].trainable_variables
        self.first.build(self.first_vars)
        self.second.build(self.second_vars)

    def __call__(self, model, batch):
        x, y = batch
        with tf.GradientTape(persistent=True) as tape:
            loss = tf.reduce_mean(tf.square(model(x, training=True) - y))
        for optimizer, variables in [
            (self.first, self.first_vars),
            (self.second, self.second_vars),
        ]:
            grads = tape.gradient(loss, variables)
            optimizer.apply_gradients(zip(grads, variables, strict=True))
        return {"loss": loss}


def test_custom_train_step_with_two_optimizers_is_checkpointed(tmp_path):
    x, y = _data(16)
    model = _model()
    step = TwoOptimizerStep(model)
    trainer = _trainer(model, optimizer=None, train_step=step, seed=0, checkpoint_dir=tmp_path)
    history = trainer.fit((x, y), epochs=3, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert int(step.first.iterations) == int(step.second.iterations) == 6
    reader = tf.train.load_checkpoint(str(tmp_path / "ckpt-6"))
    assert any(name.startswith("train_step/first") for name in reader.get_variable_to_shape_map())


class Linear(tf.Module):
    def __init__(self):
        super().__init__()
        self.w = tf.Variable(tf.zeros((3, 1)))
        self.b = tf.Variable(tf.zeros((1,)))

    @tf.function(input_signature=[tf.TensorSpec((None, 3), tf.float32)])
    def __call__(self, x):
        return x @ self.w + self.b


def test_tf_module_model_trains_checkpoints_resumes_and_exports(tmp_path):
    x, y = _data(32)
    module = Linear()
    trainer = _trainer(
        module, keras.optimizers.SGD(0.1), loss="mse", seed=0, checkpoint_dir=tmp_path / "ckpt"
    )
    trainer.fit((x, y), epochs=20, batch_size=8, verbose=0)
    np.testing.assert_allclose(module.w.numpy().ravel(), [1.0, -2.0, 0.5], atol=0.05)
    weights = trainer.get_weights()
    trainer.set_weights([np.zeros_like(w) for w in weights])
    trainer.set_weights(weights)
    np.testing.assert_array_equal(trainer.get_weights()[0], weights[0])

    resumed_module = Linear()
    resumed = _trainer(
        resumed_module,
        keras.optimizers.SGD(0.1),
        loss="mse",
        seed=0,
        checkpoint_dir=tmp_path / "ckpt",
    )
    resumed.fit((x, y), epochs=20, batch_size=8, verbose=0, resume=True)  # already done
    assert resumed.step == 80
    np.testing.assert_array_equal(resumed_module.w.numpy(), module.w.numpy())

    tf.saved_model.save(module, str(tmp_path / "export"))
    loaded = tf.saved_model.load(str(tmp_path / "export"))
    np.testing.assert_allclose(loaded(x), module(x), rtol=1e-6)


class _FakeVariational(keras.layers.Layer):
    is_variational = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.num_train_examples = None
        self.dense = keras.layers.Dense(1)

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, x):
        n = self.num_train_examples or 1  # None while Keras traces the model symbolically
        self.add_loss(tf.reduce_sum(tf.square(self.dense.kernel)) / n)
        return self.dense(x)


def test_variational_models_get_num_train_examples_and_log_kl():
    x, y = _data(24)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), _FakeVariational()])
    history = _trainer(model, "sgd", loss="mse", seed=0).fit((x, y), batch_size=8, verbose=0)
    assert model.layers[0].num_train_examples == 24
    assert {"kl", "nll", "loss"} <= set(history.history)
    np.testing.assert_allclose(
        history.history["loss"][0], history.history["nll"][0] + history.history["kl"][0], rtol=1e-5
    )
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(5)
    model2 = keras.Sequential([keras.Input((3,)), _FakeVariational()])
    _trainer(model2, "sgd", loss="mse").fit(dataset, verbose=0)
    assert model2.layers[0].num_train_examples == 24  # counted, not cardinality * batch


def test_variational_model_with_unknown_size_is_an_error():
    x, y = _data(8)
    model = keras.Sequential([keras.Input((3,)), _FakeVariational()])
    with pytest.raises(ValueError, match=r"number of training examples is unknown"):
        _trainer(model, "sgd", loss="mse").fit(iter([(x, y)]), verbose=0)


class NoXla(keras.layers.Layer):
    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, x):
        same = tf.numpy_function(lambda a: a, [x], tf.float32, stateful=False)
        return tf.ensure_shape(same, x.shape)


def test_jit_auto_falls_back_with_a_warning():
    x, y = _data(8)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), NoXla(), keras.layers.Dense(1)])
    trainer = Trainer(model, "sgd", loss="mse", seed=0, jit_compile="auto")
    with pytest.warns(UserWarning, match=r"XLA compilation failed"):
        history = trainer.fit((x, y), epochs=2, batch_size=4, verbose=0)
    # The fallback trains exactly as a run that never asked for XLA.
    keras.utils.set_random_seed(0)
    plain = Trainer(
        keras.Sequential([keras.Input((3,)), NoXla(), keras.layers.Dense(1)]),
        "sgd",
        loss="mse",
        seed=0,
        jit_compile=False,
    )
    plain_history = plain.fit((x, y), epochs=2, batch_size=4, verbose=0)
    np.testing.assert_allclose(history.history["loss"], plain_history.history["loss"], rtol=1e-6)
    for a, b in zip(trainer.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("epochs_per_execution", [1, "auto"])
def test_repeated_fit_reuses_the_compiled_loop(epochs_per_execution):
    x, y = _data(16)
    traces = []

    def counted_mse(y_true, y_pred):  # Python code runs only while TF traces
        traces.append(1)
        return keras.ops.mean(keras.ops.square(y_true - y_pred), axis=-1)

    trainer = Trainer(  # XLA path
        _model(), "sgd", loss=counted_mse, seed=0, epochs_per_execution=epochs_per_execution
    )
    trainer.fit((x, y), batch_size=8, verbose=0)
    loop, first = trainer._loop, len(traces)
    trainer.fit((x + 1, y), batch_size=8, verbose=0)
    assert trainer._loop is loop
    assert len(traces) == first  # the second call traced nothing
    np.testing.assert_array_equal(loop.tensors[0].numpy(), x + 1)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"epochs": 0}, ValueError, r"Received: epochs=0"),
        ({"batch_size": 0}, ValueError, r"Received: batch_size=0"),
        ({"epochs": 1.5}, TypeError, r"Received: epochs=1.5"),
        ({"resume": True}, ValueError, r"needs `checkpoint_dir`"),
    ],
)
def test_bad_fit_arguments(kwargs, error, match):
    x, y = _data(8)
    with pytest.raises(error, match=match):
        _trainer(_model(), "sgd", loss="mse").fit((x, y), verbose=0, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"accumulate_steps": 0}, ValueError, r"Received: accumulate_steps=0"),
        ({"clip": "bogus:1"}, ValueError, r"Received: clip='bogus:1'"),
        ({"jit_compile": "yes"}, ValueError, r"Received: jit_compile='yes'"),
        ({"steps_per_execution": 0}, ValueError, r"Received: steps_per_execution=0"),
        ({"checkpoint_every": -1}, ValueError, r"Received: checkpoint_every=-1"),
        ({"seed": "0"}, TypeError, r"Received: seed='0'"),
        ({"callbacks": [object()]}, TypeError, r"tfcraft.training.Callback"),
        ({"loss": None}, ValueError, r"Give `loss`, `loss_fn` or `train_step`"),
        ({"optimizer": "nope"}, ValueError, r"Received: optimizer='nope'"),
    ],
)
def test_bad_trainer_arguments(kwargs, error, match):
    arguments = {"optimizer": "sgd", "loss": "mse", **kwargs}
    with pytest.raises(error, match=match):
        Trainer(_model(), **arguments)


def test_model_must_be_callable_with_variables():
    with pytest.raises(TypeError, match=r"Received: model=3"):
        Trainer(3, loss="mse")


def test_bad_data_is_rejected_before_training():
    trainer = _trainer(_model(), "sgd", loss="mse")
    with pytest.raises(ValueError, match=r"len\(x\)=4, len\(y\)=3"):
        trainer.fit((np.zeros((4, 3)), np.zeros((3, 1))), verbose=0)
    with pytest.raises(TypeError, match=r"`y` must hold numbers"):
        trainer.fit((np.zeros((2, 3)), np.array(["a", "b"])), verbose=0)
    assert trainer.step == 0


def test_non_scalar_loss_is_rejected_before_any_update():
    x, y = _data(8)
    model = _model()
    before = model.get_weights()
    trainer = _trainer(model, "sgd", loss=keras.losses.MeanSquaredError(reduction=None))
    with pytest.raises(ValueError, match=r"must reduce to a scalar"):
        trainer.fit((x, y), verbose=0)
    np.testing.assert_array_equal(before[0], model.get_weights()[0])


def test_model_that_cannot_be_built_from_the_data():
    model = keras.Sequential([keras.layers.Reshape((2, 2)), keras.layers.Dense(1)])
    with pytest.raises(
        ValueError, match=r"(?s)could not be built.*Received: x shapes=\[\(2, 3\)\]"
    ):
        _trainer(model, "sgd", loss="mse").fit((np.zeros((8, 3)), np.zeros((8, 1))), verbose=0)


def test_unbuilt_model_is_built_from_the_data():
    model = keras.Sequential([keras.layers.Dense(1)])
    _trainer(model, "sgd", loss="mse").fit((np.zeros((8, 3)), np.zeros((8, 1))), verbose=0)
    assert model.built


def test_infinite_dataset_with_steps_per_epoch_and_xla_steps():
    x, y = _data(12)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(4).repeat()
    recorder = Recorder()
    trainer = Trainer(
        _model(),
        "sgd",
        loss="mse",
        seed=0,
        jit_compile=True,
        callbacks=[recorder],
        steps_per_execution=2,
    )
    history = trainer.fit(dataset, epochs=2, steps_per_epoch=5, verbose=0)
    assert trainer.step == 10
    assert recorder.params["steps"] == 5
    assert recorder.events == [1, 3, 4, 1, 3, 4]
    assert len(history.history["loss"]) == 2


@pytest.mark.parametrize(
    ("random_layer", "expect_xla"),
    [(None, True), ("dropout", False), ("flipout", False)],
)
def test_jit_auto_skips_xla_for_models_that_draw_random_numbers(random_layer, expect_xla):
    from tfcraft.layers import DenseFlipout

    x, y = _data(16)
    hidden = {
        None: keras.layers.Dense(4),
        "dropout": keras.layers.Dropout(0.2, seed=0),
        "flipout": DenseFlipout(4, seed=0),
    }[random_layer]
    model = keras.Sequential([keras.Input((3,)), hidden, keras.layers.Dense(1)])
    trainer = Trainer(model, "sgd", loss="mse", seed=0, jit_compile="auto")
    trainer.fit((x, y), batch_size=8, verbose=0)
    assert trainer._loop.jit_compile is expect_xla
    forced = Trainer(model, "sgd", loss="mse", seed=0, jit_compile=True)
    forced.fit((x, y), batch_size=8, verbose=0)
    assert forced._loop.jit_compile is True
