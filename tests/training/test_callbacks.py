import csv
import io
import json
import math
import os
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcraft.training.callbacks import (
    Callback,
    CallbackList,
    CSVLogger,
    EarlyStopping,
    History,
    JSONLLogger,
    LearningRateScheduler,
    NanGuard,
    ProgressBar,
    TensorBoard,
)


def make_trainer(epochs=3, steps=4, learning_rate=0.1):
    """A stand-in for the Trainer with the public attributes callbacks may use."""
    trainer = types.SimpleNamespace(
        params={"epochs": epochs, "steps": steps, "verbose": 1},
        model=None,
        optimizer=keras.optimizers.SGD(learning_rate=learning_rate),
        stop_training=False,
        step=0,
        epoch=0,
        weights=[np.zeros(2, "float32")],
    )
    trainer.get_weights = lambda: [w.copy() for w in trainer.weights]
    trainer.set_weights = lambda ws: setattr(trainer, "weights", [np.array(w) for w in ws])
    return trainer


def run_epochs(callbacks, trainer, epoch_logs, steps=4, first_epoch=0, batch_logs=None):
    """Drive a CallbackList like the Trainer does; stops when a callback asks."""
    callback_list = CallbackList(callbacks)
    callback_list.set_trainer(trainer)
    callback_list.on_train_begin()
    for epoch, logs in enumerate(epoch_logs, start=first_epoch):
        trainer.epoch = epoch
        callback_list.on_epoch_begin(epoch)
        for batch in range(steps):
            trainer.step += 1
            callback_list.on_train_batch_begin(batch)
            callback_list.on_train_batch_end(batch, batch_logs or {"loss": logs.get("loss", 1.0)})
        callback_list.on_epoch_end(epoch, dict(logs))
        if trainer.stop_training:
            break
    callback_list.on_train_end()
    return callback_list


def json_round_trip(state):
    return json.loads(json.dumps(state))


# ---------------------------------------------------------------- History


def test_history_records_epochs_and_resumes_same_lists():
    logs = [{"loss": 1.0 / (e + 1), "val_loss": 2.0 / (e + 1)} for e in range(4)]
    full = History()
    run_epochs([full], make_trainer(), logs)

    first = History()
    run_epochs([first], make_trainer(), logs[:2])
    resumed = History()
    resumed.load_state_dict(json_round_trip(first.state_dict()))
    run_epochs([resumed], make_trainer(), logs[2:], first_epoch=2)

    assert full.epoch == [0, 1, 2, 3]
    assert full.history["loss"] == [1.0, 0.5, 1 / 3, 0.25]
    assert resumed.epoch == full.epoch
    assert resumed.history == full.history


# ---------------------------------------------------------------- ProgressBar


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_plain_lines_when_not_a_terminal():
    stream = io.StringIO()
    logs = [{"loss": 0.1234, "mae": 0.5, "val_loss": 0.25}, {"loss": 0.0625, "mae": 0.4}]
    run_epochs([ProgressBar(stream=stream)], make_trainer(epochs=2), logs)
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 2  # one per epoch
    assert lines[0].startswith("Epoch 1/2 - 4/4 steps")
    assert "loss: 0.1234" in lines[0]
    assert "val_loss: 0.25" in lines[0]
    assert "steps/s" in lines[0]
    assert "loss: 0.0625" in lines[1]


def test_progress_bar_update_freq_writes_lines_every_n_steps():
    stream = io.StringIO()
    run_epochs([ProgressBar(stream=stream, update_freq=2)], make_trainer(epochs=1), [{"loss": 0.5}])
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3  # steps 2 and 4, then the epoch line
    assert "2/4 steps" in lines[0] and "ETA" in lines[0]
    assert "\r" not in stream.getvalue()


def test_progress_bar_live_bar_on_a_terminal():
    stream = FakeTerminal()
    run_epochs([ProgressBar(stream=stream)], make_trainer(epochs=1), [{"loss": 0.1234}])
    text = stream.getvalue()
    assert text.startswith("Epoch 1/1\n")
    assert "\r[" in text
    assert "[==============================]" in text
    assert "loss: 0.1234" in text
    assert text.endswith("\n")


def test_progress_bar_unknown_steps_counts_without_bar_or_eta():
    stream, trainer = FakeTerminal(), make_trainer(epochs=1)
    trainer.params["steps"] = None  # e.g. an iterator of unknown length
    run_epochs([ProgressBar(stream=stream)], trainer, [{"loss": 0.5}], steps=3)
    last = stream.getvalue().split("\r")[-1]
    assert last.startswith("3 steps") and "ETA" not in last and "[" not in last


def test_progress_bar_verbose_zero_is_silent_and_two_is_plain():
    silent, plain = io.StringIO(), FakeTerminal()
    bars = [ProgressBar(verbose=0, stream=silent), ProgressBar(verbose=2, stream=plain)]
    run_epochs(bars, make_trainer(epochs=1), [{"loss": 0.5}])
    assert silent.getvalue() == ""
    assert "\r" not in plain.getvalue() and "loss: 0.5" in plain.getvalue()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"verbose": 3}, r"Received: verbose=3"), ({"update_freq": 0}, r"Received: update_freq=0")],
)
def test_progress_bar_bad_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ProgressBar(**kwargs)


# ---------------------------------------------------------------- EarlyStopping


def keras_stop_epoch(losses, monitor="val_loss", **kwargs):
    """Feed the losses to keras.callbacks.EarlyStopping; return (stop epoch, weights)."""
    model = types.SimpleNamespace(stop_training=False, metrics=[], weights=[np.zeros(2)])
    model.get_weights = lambda: [w.copy() for w in model.weights]
    model.set_weights = lambda ws: setattr(model, "weights", [np.array(w) for w in ws])
    callback = keras.callbacks.EarlyStopping(monitor=monitor, **kwargs)
    callback.set_model(model)
    callback.on_train_begin()
    last = None
    for epoch, loss in enumerate(losses):
        model.weights = [np.full(2, epoch, "float64")]
        callback.on_epoch_end(epoch, {monitor: loss})
        last = epoch
        if model.stop_training:
            break
    callback.on_train_end()
    return last, model.weights[0][0]


def tfcraft_stop_epoch(losses, monitor="val_loss", **kwargs):
    trainer = make_trainer()
    callback = EarlyStopping(monitor=monitor, **kwargs)
    callback.set_trainer(trainer)
    callback.on_train_begin()
    last = None
    for epoch, loss in enumerate(losses):
        trainer.weights = [np.full(2, epoch, "float64")]
        callback.on_epoch_end(epoch, {monitor: loss})
        last = epoch
        if trainer.stop_training:
            break
    callback.on_train_end()
    return last, trainer.weights[0][0]


LOSS_SEQUENCES = [
    [1.0, 0.9, 0.8, 0.85, 0.86, 0.87, 0.7, 0.71, 0.72, 0.73],
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
    [0.5, 0.49, 0.48, 0.47, 0.46, 0.45, 0.44],
    [2.0, 1.0, float("nan"), 1.5, 0.9, 0.95, 0.99, 1.2],
]


@pytest.mark.parametrize("losses", LOSS_SEQUENCES)
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"patience": 2},
        {"patience": 1, "min_delta": 0.02},
        {"patience": 2, "start_from_epoch": 3},
        {"patience": 2, "restore_best_weights": True},
        {"patience": 1, "baseline": 0.8},
        {"patience": 2, "mode": "max"},
    ],
)
def test_early_stopping_matches_keras(losses, kwargs):
    assert tfcraft_stop_epoch(losses, **kwargs) == keras_stop_epoch(losses, **kwargs)


def test_early_stopping_auto_mode_maximizes_accuracy_like_keras_max():
    accuracies = [0.5, 0.6, 0.55, 0.58, 0.7, 0.69, 0.68]
    ours = tfcraft_stop_epoch(accuracies, monitor="val_accuracy", patience=1)
    reference = keras_stop_epoch(accuracies, monitor="val_accuracy", patience=1, mode="max")
    assert ours == reference


def test_early_stopping_resume_stops_on_the_same_epoch():
    logs = [{"val_loss": v} for v in LOSS_SEQUENCES[0]]
    uninterrupted = EarlyStopping(patience=2)
    run_epochs([uninterrupted], make_trainer(), logs, steps=1)

    first = EarlyStopping(patience=2)
    run_epochs([first], make_trainer(), logs[:4], steps=1)
    state = json_round_trip(first.state_dict())
    assert state == {
        "wait": 1,
        "best": 0.8,
        "best_epoch": 2,
        "stopped_epoch": 0,
        "best_weights_kept": False,
    }
    second, trainer = EarlyStopping(patience=2), make_trainer()
    second.load_state_dict(state)
    run_epochs([second], trainer, logs[4:], steps=1, first_epoch=4)

    assert trainer.stop_training
    assert second.stopped_epoch == uninterrupted.stopped_epoch == 4
    assert second.state_dict() == uninterrupted.state_dict()


def test_early_stopping_resume_warns_when_best_weights_were_not_kept():
    stopper = EarlyStopping(monitor="loss", patience=5, restore_best_weights=True)
    stopper.load_state_dict({"wait": 1, "best": 0.1, "best_epoch": 3, "stopped_epoch": 0})
    trainer = make_trainer()
    trainer.weights = [np.ones(2)]
    with pytest.warns(UserWarning, match=r"checkpoint of epoch 3"):
        run_epochs([stopper], trainer, [{"loss": 0.5}], first_epoch=4)
    np.testing.assert_array_equal(trainer.weights[0], np.ones(2))


def test_early_stopping_missing_monitor_warns_like_keras():
    stopper = EarlyStopping(monitor="val_loss")
    stopper.set_trainer(make_trainer())
    stopper.on_train_begin()
    with pytest.warns(UserWarning, match=r"`val_loss` which is not available.*loss"):
        stopper.on_epoch_end(0, {"loss": 1.0})
    assert stopper.wait == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"patience": -1}, ValueError, r"Received: patience=-1"),
        ({"patience": 1.5}, TypeError, r"Received: patience=1.5"),
        ({"mode": "maximize"}, ValueError, r"\['auto', 'min', 'max'\]. Received: mode='maximize'"),
        ({"min_delta": -0.1}, ValueError, r"Received: min_delta=-0.1"),
        ({"start_from_epoch": -2}, ValueError, r"Received: start_from_epoch=-2"),
    ],
)
def test_early_stopping_bad_args(kwargs, error, match):
    with pytest.raises(error, match=match):
        EarlyStopping(**kwargs)


def test_early_stopping_unknown_direction_is_an_error_once_metrics_are_known():
    stopper = EarlyStopping(monitor="val_widgets")
    with pytest.raises(ValueError, match=r"Received: monitor='val_widgets', mode='auto'"):
        stopper.set_trainer(make_trainer())


# ---------------------------------------------------------------- NanGuard


def test_nan_guard_asks_the_trainer_to_skip_nonfinite_updates():
    assert NanGuard.skips_nonfinite_updates is True
    assert NanGuard().skips_nonfinite_updates is True


def test_nan_guard_raise_names_the_step():
    trainer = make_trainer()
    guard = NanGuard()
    batch_logs = {"loss": float("nan"), "grad_norm": float("nan"), "nonfinite_steps": 1.0}
    with pytest.raises(FloatingPointError, match=r"global step 1 \(epoch 0, batch 0\)"):
        run_epochs([guard], trainer, [{"loss": 1.0}], batch_logs=batch_logs)
    assert guard.skipped_steps == 1


def test_nan_guard_stop_sets_stop_training():
    trainer = make_trainer()
    guard = NanGuard(policy="stop")
    run_epochs([guard], trainer, [{"loss": 1.0}] * 3, steps=2, batch_logs={"nonfinite_steps": 2.0})
    assert trainer.stop_training
    assert trainer.epoch == 0
    assert guard.skipped_steps == 4  # both calls of the first epoch, 2 bad steps each


def test_nan_guard_skip_counts_and_resumes():
    trainer = make_trainer()
    guard = NanGuard(policy="skip")
    batch_logs = {"loss": float("inf"), "nonfinite_steps": 3.0}
    run_epochs([guard], trainer, [{"loss": 1.0}] * 2, steps=2, batch_logs=batch_logs)
    assert not trainer.stop_training
    assert guard.skipped_steps == 12

    resumed = NanGuard(policy="skip")
    resumed.load_state_dict(json_round_trip(guard.state_dict()))
    run_epochs([resumed], make_trainer(), [{"loss": 1.0}], steps=1, batch_logs={"loss": math.nan})
    assert resumed.skipped_steps == 13  # no `nonfinite_steps` key: falls back to the loss


def test_nan_guard_finite_steps_are_not_counted():
    guard = NanGuard()
    run_epochs([guard], make_trainer(), [{"loss": 1.0}], batch_logs={"nonfinite_steps": 0.0})
    assert guard.skipped_steps == 0


def test_nan_guard_unknown_policy_lists_valid_ones():
    valid = r"\['raise', 'skip', 'stop', 'rollback'\]"
    with pytest.raises(ValueError, match=valid + r". Received: policy='warn'"):
        NanGuard(policy="warn")


# ---------------------------------------------------------------- TensorBoard


def read_scalars(directory):
    """{tag: [(step, value), ...]} from every event file in `directory`."""
    scalars = {}
    for name in sorted(os.listdir(directory)):
        for record in tf.data.TFRecordDataset(os.path.join(directory, name)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                assert value.metadata.plugin_data.plugin_name == "scalars"
                number = float(tf.make_ndarray(value.tensor))
                scalars.setdefault(value.tag, []).append((event.step, number))
    return scalars


def test_tensorboard_writes_epoch_and_batch_scalars(tmp_path):
    epoch_logs = [
        {"loss": 0.5, "mae": 0.25, "grad_norm": 2.0, "learning_rate": 0.01, "val_loss": 0.75},
        {"loss": 0.25, "mae": 0.125, "grad_norm": 1.0, "learning_rate": 0.005, "val_loss": 0.5},
    ]
    board = TensorBoard(tmp_path, update_freq=2)
    run_epochs([board], make_trainer(), epoch_logs, batch_logs={"loss": 1.5, "grad_norm": 3.0})

    train = read_scalars(tmp_path / "train")
    assert train["epoch_loss"] == [(0, 0.5), (1, 0.25)]
    assert train["epoch_grad_norm"] == [(0, 2.0), (1, 1.0)]
    assert train["epoch_learning_rate"] == [(0, pytest.approx(0.01)), (1, pytest.approx(0.005))]
    assert train["epoch_mae"] == [(0, 0.25), (1, 0.125)]
    assert train["batch_loss"] == [(2, 1.5), (4, 1.5), (6, 1.5), (8, 1.5)]
    assert "epoch_val_loss" not in train
    validation = read_scalars(tmp_path / "validation")
    assert validation == {"epoch_loss": [(0, 0.75), (1, 0.5)]}


def test_tensorboard_bad_update_freq():
    with pytest.raises(ValueError, match=r"Received: update_freq='batch'"):
        TensorBoard("logs", update_freq="batch")


# ---------------------------------------------------------------- CSV / JSONL loggers


EPOCH_LOGS = [{"loss": 1.0 / (e + 1), "val_loss": 1.5 / (e + 1)} for e in range(5)]


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def strict_json(line):
    def reject(constant):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(line, parse_constant=reject)


def test_csv_logger_writes_one_row_per_epoch(tmp_path):
    path = tmp_path / "log.csv"
    run_epochs([CSVLogger(path)], make_trainer(), EPOCH_LOGS[:3])
    rows = read_csv(path)
    assert [row["epoch"] for row in rows] == ["0", "1", "2"]
    assert [float(row["loss"]) for row in rows] == [1.0, 0.5, 1 / 3]
    assert list(rows[0]) == ["epoch", "loss", "val_loss"]
    assert os.listdir(tmp_path) == ["log.csv"]  # no temporary file left behind


def test_csv_logger_new_key_adds_a_column(tmp_path):
    path = tmp_path / "log.csv"
    run_epochs([CSVLogger(path)], make_trainer(), [{"loss": 1.0}, {"loss": 0.5, "val_loss": 0.7}])
    rows = read_csv(path)
    assert rows == [
        {"epoch": "0", "loss": "1.0", "val_loss": ""},
        {"epoch": "1", "loss": "0.5", "val_loss": "0.7"},
    ]


@pytest.mark.parametrize(("append", "expected"), [(False, ["0", "1"]), (True, ["0", "1"] * 2)])
def test_csv_logger_append(tmp_path, append, expected):
    path = tmp_path / "log.csv"
    run_epochs([CSVLogger(path)], make_trainer(), EPOCH_LOGS[:2])
    run_epochs([CSVLogger(path, append=append)], make_trainer(), EPOCH_LOGS[:2])
    assert [row["epoch"] for row in read_csv(path)] == expected


@pytest.mark.parametrize(
    ("logger_class", "read_epochs"),
    [
        (CSVLogger, lambda path: [int(row["epoch"]) for row in read_csv(path)]),
        (
            JSONLLogger,
            lambda path: [strict_json(x)["epoch"] for x in path.read_text().split("\n")[:-1]],
        ),
    ],
)
def test_logger_resume_does_not_duplicate_rows(tmp_path, logger_class, read_epochs):
    path = tmp_path / "log"
    logger = logger_class(path)
    checkpoints = []

    class Checkpoint(Callback):  # what the Trainer saves with the checkpoint of epoch 1
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                checkpoints.append(json_round_trip(logger.state_dict()))

    run_epochs([logger, Checkpoint()], make_trainer(), EPOCH_LOGS[:3])  # then a crash
    assert read_epochs(path) == [0, 1, 2]
    state = checkpoints[0]
    assert state == {"rows_written": 2}

    resumed = logger_class(path)  # append=False: resuming must still keep rows 0 and 1
    resumed.load_state_dict(state)
    run_epochs([resumed], make_trainer(), EPOCH_LOGS[2:], first_epoch=2)
    assert read_epochs(path) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("logger_class", [CSVLogger, JSONLLogger])
def test_logger_failed_write_leaves_previous_file_intact(tmp_path, monkeypatch, logger_class):
    path = tmp_path / "log"
    logger = logger_class(path)
    run_epochs([logger], make_trainer(), EPOCH_LOGS[:2])
    before = path.read_text()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        run_epochs([logger], make_trainer(), EPOCH_LOGS[2:3], first_epoch=2)
    assert path.read_text() == before  # still complete: old file, not half a new one


def test_jsonl_logger_one_strict_json_object_per_epoch(tmp_path):
    path = tmp_path / "metrics.jsonl"
    logs = [{"loss": 0.5, "nonfinite_steps": 0.0}, {"loss": float("nan"), "nonfinite_steps": 1.0}]
    run_epochs([JSONLLogger(path)], make_trainer(), logs)
    text = path.read_text()
    assert text.endswith("\n")
    records = [strict_json(line) for line in text.splitlines()]
    assert records == [
        {"epoch": 0, "loss": 0.5, "nonfinite_steps": 0.0},
        {"epoch": 1, "loss": None, "nonfinite_steps": 1.0},
    ]


# ---------------------------------------------------------------- LearningRateScheduler


def learning_rates(scheduler, epochs=4, initial=0.1):
    trainer = make_trainer(learning_rate=initial)
    seen = []
    scheduler.set_trainer(trainer)
    for epoch in range(epochs):
        scheduler.on_epoch_begin(epoch)
        seen.append(float(trainer.optimizer.learning_rate))
    return seen


def test_lr_scheduler_with_epoch_function():
    rates = learning_rates(LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1)))
    np.testing.assert_allclose(rates, [0.1, 0.05, 0.1 / 3, 0.025], rtol=1e-6)


def test_lr_scheduler_with_keras_style_two_argument_function():
    rates = learning_rates(LearningRateScheduler(lambda epoch, lr: lr * 0.5))
    np.testing.assert_allclose(rates, [0.05, 0.025, 0.0125, 0.00625], rtol=1e-6)


def test_lr_scheduler_with_keras_schedule_evaluated_at_the_epoch():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.2, decay_steps=2, decay_rate=0.5)
    rates = learning_rates(LearningRateScheduler(schedule))
    expected = [float(schedule(epoch)) for epoch in range(4)]
    np.testing.assert_allclose(rates, expected, rtol=1e-6)
    np.testing.assert_allclose(rates[2], 0.1, rtol=1e-6)


def test_lr_scheduler_bad_schedule():
    with pytest.raises(TypeError, match=r"Received: schedule=0.1"):
        LearningRateScheduler(0.1)
    with pytest.raises(ValueError, match=r"Received: learning_rate=nan at epoch=0"):
        learning_rates(LearningRateScheduler(lambda epoch: float("nan")))


# ---------------------------------------------------------------- together


def test_callback_list_state_survives_json(tmp_path):
    callbacks = [
        History(),
        EarlyStopping(monitor="loss", patience=3),
        NanGuard(policy="skip"),
        CSVLogger(tmp_path / "log.csv"),
        JSONLLogger(tmp_path / "log.jsonl"),
    ]
    callback_list = run_epochs(callbacks, make_trainer(), EPOCH_LOGS[:2])
    state = json_round_trip(callback_list.state_dict())
    assert set(state) == {"History", "EarlyStopping", "NanGuard", "CSVLogger", "JSONLLogger"}
    fresh = CallbackList(
        [
            History(),
            EarlyStopping(monitor="loss", patience=3),
            NanGuard(policy="skip"),
            CSVLogger(tmp_path / "log.csv"),
            JSONLLogger(tmp_path / "log.jsonl"),
        ]
    )
    fresh.load_state_dict(state)
    assert fresh.state_dict() == state


# ---------------------------------------------------------------- with the real Trainer


def test_callbacks_with_the_real_trainer(tmp_path, capsys):
    from tfcraft.training import Trainer

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]], "float32")).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    stopper = EarlyStopping(monitor="loss", patience=0, min_delta=10.0)  # stops at epoch 1
    callbacks = [
        stopper,
        NanGuard(policy="raise"),
        CSVLogger(tmp_path / "log.csv"),
        JSONLLogger(tmp_path / "log.jsonl"),
        TensorBoard(tmp_path / "tb"),
        LearningRateScheduler(lambda epoch: 0.01 * 0.5**epoch),
    ]
    trainer = Trainer(
        model, optimizer="adam", loss="mse", callbacks=callbacks, seed=0, jit_compile=False
    )
    history = trainer.fit((x, y), epochs=5, batch_size=16, verbose=1)

    assert isinstance(history, History)
    assert history.epoch == [0, 1] and stopper.stopped_epoch == 1
    assert {"loss", "grad_norm", "learning_rate", "nonfinite_steps"} <= set(history.history)
    np.testing.assert_allclose(history.history["learning_rate"], [0.01, 0.005], rtol=1e-6)
    with open(tmp_path / "log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["loss"]) for r in rows] == pytest.approx(history.history["loss"])
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0, 1]
    out = capsys.readouterr().out
    assert "\r" not in out and out.count("Epoch ") == 2 and "loss: " in out


@pytest.mark.parametrize("policy", ["skip", "raise"])
def test_nan_guard_with_the_real_trainer(policy):
    from tfcraft.training import Trainer

    keras.utils.set_random_seed(0)
    x = np.ones((64, 3), "float32")
    x[5] = np.nan  # one bad batch per epoch
    y = np.zeros((64, 1), "float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    guard = NanGuard(policy=policy)
    trainer = Trainer(
        model, optimizer="sgd", loss="mse", callbacks=[guard], seed=0, jit_compile=False
    )
    if policy == "raise":
        with pytest.raises(FloatingPointError, match="global step"):
            trainer.fit((x, y), epochs=2, batch_size=16, verbose=0)
    else:
        history = trainer.fit((x, y), epochs=2, batch_size=16, verbose=0)
        assert guard.skipped_steps == 2
        assert history.history["nonfinite_steps"] == [1.0, 1.0]
    assert all(np.isfinite(w).all() for w in trainer.get_weights())


def test_resume_with_the_real_trainer_continues_logs_and_history(tmp_path):
    from tfcraft.training import Trainer

    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3)).astype("float32")
    y = x.sum(axis=1, keepdims=True)

    def run(epochs, resume):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        callbacks = [
            CSVLogger(tmp_path / "log.csv"),
            JSONLLogger(tmp_path / "log.jsonl"),
            EarlyStopping(monitor="loss", patience=10),
        ]
        trainer = Trainer(
            model,
            optimizer="adam",
            loss="mse",
            callbacks=callbacks,
            seed=0,
            jit_compile=False,
            checkpoint_dir=tmp_path / "ckpt",
        )
        history = trainer.fit((x, y), epochs=epochs, batch_size=8, verbose=0, resume=resume)
        return history, callbacks

    run(2, resume=False)
    history, callbacks = run(4, resume=True)
    with open(tmp_path / "log.csv", newline="") as handle:
        epochs = [int(row["epoch"]) for row in csv.DictReader(handle)]
    assert epochs == [0, 1, 2, 3]
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 4
    assert history.epoch == [0, 1, 2, 3] and len(history.history["loss"]) == 4
    stopper = callbacks[2]  # its best spans both runs
    assert stopper.best == min(history.history["loss"])
    assert history.history["loss"][stopper.best_epoch] == stopper.best
