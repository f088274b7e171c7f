"""Several tiny epochs per graph call: the same training, the same callback logs."""

import keras
import numpy as np
import pytest

from tfcraft.training import Callback, EarlyStopping, NanGuard, Trainer
from tfcraft.training.callbacks import History


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)]
    )


def _data(n=20, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    return x, (x @ np.array([[1.0], [-2.0], [0.5]], "float32")).astype("float32")


class WeightSums(Callback):
    """Records the model as each epoch ends; `epoch_sync` as given."""

    def __init__(self, epoch_sync):
        super().__init__()
        self.epoch_sync = epoch_sync
        self.sums, self.epochs = [], []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(epoch)
        self.sums.append(float(sum(w.sum() for w in self.trainer.model.get_weights())))


def _trainer(model_seed=0, **kwargs):
    kwargs.setdefault("jit_compile", False)
    return Trainer(_model(model_seed), "adam", loss="mse", metrics=["mae"], seed=3, **kwargs)


def _fit(epochs_per_execution, epochs=5, jit_compile=False):
    trainer = _trainer(jit_compile=jit_compile, epochs_per_execution=epochs_per_execution)
    history = trainer.fit(_data(), epochs=epochs, batch_size=8, verbose=0)
    return trainer, history


@pytest.mark.parametrize("jit_compile", [False, True])
def test_chunked_epochs_train_and_log_exactly_as_single_epochs(jit_compile):
    single, single_history = _fit(1, jit_compile=jit_compile)
    chunked, chunked_history = _fit(4, jit_compile=jit_compile)  # chunks of 4 + 1 epochs
    for a, b in zip(single.model.get_weights(), chunked.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert chunked_history.epoch == [0, 1, 2, 3, 4]
    assert sorted(chunked_history.history) == sorted(single_history.history)
    for key, values in single_history.history.items():
        np.testing.assert_allclose(chunked_history.history[key], values, rtol=1e-6, err_msg=key)
    assert chunked.step == single.step == 5 * 3  # 20 rows in batches of 8: 3 steps per epoch


def test_auto_runs_epochs_together_only_when_every_callback_allows_it():
    for epoch_sync, distinct in [(True, 6), (False, 1)]:
        recorder = WeightSums(epoch_sync)
        trainer = Trainer(_model(), "sgd", loss="mse", seed=0, callbacks=[recorder])
        trainer.fit(_data(), epochs=6, batch_size=8, verbose=0)
        assert recorder.epochs == list(range(6))
        # In sync the callback sees six different models; replayed, the final one six times.
        assert len(set(recorder.sums)) == distinct


def test_array_validation_runs_in_the_graph_with_the_same_logs():
    """Array validation joins the chunk; each epoch's val logs equal a one-epoch-per-call run."""
    histories = []
    for epochs_per_execution in ("auto", 1):
        trainer = Trainer(
            _model(), "sgd", loss="mse", seed=0, epochs_per_execution=epochs_per_execution
        )
        histories.append(
            trainer.fit(
                _data(), epochs=5, batch_size=8, verbose=0, validation_data=_data(8, seed=1)
            )
        )
    chunked, single = histories
    assert len(chunked.history["val_loss"]) == 5
    assert len(set(chunked.history["val_loss"])) == 5
    for key, values in single.history.items():
        np.testing.assert_allclose(chunked.history[key], values, rtol=1e-6, err_msg=key)


def test_dataset_validation_keeps_epochs_apart_under_auto():
    import tensorflow as tf

    recorder = WeightSums(epoch_sync=False)
    trainer = Trainer(_model(), "sgd", loss="mse", seed=0, callbacks=[recorder])
    validation = tf.data.Dataset.from_tensor_slices(_data(8, seed=1)).batch(4)
    trainer.fit(_data(), epochs=3, batch_size=8, verbose=0, validation_data=validation)
    assert len(set(recorder.sums)) == 3


@pytest.mark.parametrize("restore", [False, True])
def test_early_stopping_in_the_graph_stops_on_the_same_epoch(restore):
    results = []
    for epochs_per_execution in ("auto", 1):
        stopper = EarlyStopping("val_loss", patience=2, restore_best_weights=restore)
        trainer = Trainer(
            _model(),
            keras.optimizers.SGD(0.3),
            loss="mse",
            seed=0,
            callbacks=[stopper],
            epochs_per_execution=epochs_per_execution,
        )
        # Noisy validation targets, so val_loss turns up before the 60 epochs end.
        x_val, y_val = _data(8, seed=1)
        y_val = y_val + np.random.default_rng(2).normal(size=y_val.shape).astype("float32")
        history = trainer.fit(
            _data(), epochs=60, batch_size=8, verbose=0, validation_data=(x_val, y_val)
        )
        results.append((stopper, history, trainer))
    (chunked, chunked_history, a), (single, single_history, b) = results
    assert chunked.stopped_epoch == single.stopped_epoch > 0
    assert (chunked.best_epoch, chunked.wait) == (single.best_epoch, single.wait)
    assert chunked_history.epoch == single_history.epoch
    assert a.step == b.step
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)


def test_nan_guard_skip_allows_chunking_and_raise_does_not():
    assert NanGuard("skip").epoch_sync is False
    assert NanGuard("raise").epoch_sync is True
    assert History().epoch_sync is False


def test_resume_from_a_chunk_checkpoint_matches_an_uninterrupted_run(tmp_path):
    full, _ = _fit("auto", epochs=6)
    first = _trainer(checkpoint_dir=tmp_path / "ckpt")
    first.fit(_data(), epochs=4, batch_size=8, verbose=0)
    second = _trainer(model_seed=9, checkpoint_dir=tmp_path / "ckpt")
    history = second.fit(_data(), epochs=6, batch_size=8, verbose=0, resume=True)
    assert history.epoch == [0, 1, 2, 3, 4, 5]
    for a, b in zip(full.model.get_weights(), second.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "fit_kwargs", "message"),
    [
        ({"callbacks": [EarlyStopping("val_loss")]}, {}, r"EarlyStopping"),
        ({"callbacks": [WeightSums(epoch_sync=True)]}, {}, r"WeightSums"),
        ({}, {"validation_data": lambda: iter([_data(8)])}, r"validation_data"),
        ({"checkpoint_every": 2}, {}, r"checkpoint_every"),
        ({}, {"data": lambda: iter([_data(8)])}, r"non-array data"),
    ],
)
def test_explicit_epochs_per_execution_refuses_what_needs_a_pause(kwargs, fit_kwargs, message):
    trainer = Trainer(_model(), "sgd", loss="mse", seed=0, epochs_per_execution=4, **kwargs)
    data = fit_kwargs.pop("data", _data())
    with pytest.raises(ValueError, match=rf"epochs_per_execution=4.*{message}"):
        trainer.fit(data, epochs=2, batch_size=8, verbose=0, **fit_kwargs)


@pytest.mark.parametrize("value", [0, 65, 2.5])
def test_epochs_per_execution_is_validated(value):
    with pytest.raises((ValueError, TypeError), match=rf"epochs_per_execution.*{value}"):
        Trainer(_model(), "sgd", loss="mse", epochs_per_execution=value)
