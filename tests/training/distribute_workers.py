"""Worker programs for test_distribute.py, run by `launch_local` in spawned processes."""

import json
import os
import signal
import sys
import time

import numpy as np


def report_environment():
    return {"tf_config": json.loads(os.environ["TF_CONFIG"]), "pid": os.getpid()}


def die_or_wait():
    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    if index == 1:
        print("worker one is failing on purpose", flush=True)
        sys.exit(3)
    time.sleep(900)
    return "should have been stopped"


def build():
    import keras

    init = keras.initializers.GlorotUniform
    return keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(8, activation="tanh", kernel_initializer=init(seed=1)),
            keras.layers.Dense(1, kernel_initializer=init(seed=2)),
        ]
    )


def data(n=24):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]])).astype("float32")
    return x, y


def make_trainer(strategy, checkpoint_dir=None, callbacks=()):
    import keras

    from tfcraft.training import Trainer

    return Trainer(
        build,
        optimizer=keras.optimizers.Adam(0.05),
        loss="mse",
        metrics=["mae"],
        seed=3,
        strategy=strategy,
        checkpoint_dir=checkpoint_dir,
        callbacks=list(callbacks),
    )


SEEN = []  # row ids of the training batches this process's replicas saw, one list per step


def _record(ids):
    SEEN.append(sorted(int(i) for i in ids.numpy()))


def id_loss_fn(model, batch, training):
    """MSE on the first 3 columns; the 4th is the row's id, recorded while training."""
    import tensorflow as tf

    x, y = batch
    if training:
        tf.py_function(_record, [x[:, 3]], [])
    y_pred = model(x[:, :3], training=training)
    return tf.reduce_mean(tf.square(y - y_pred)), {"y_pred": y_pred}


def dataset(n=20, batch_size=8):
    """A tf.data pipeline of (x with an id column, y): batches of 8, 8 and 4 rows."""
    import tensorflow as tf

    x, y = data(n)
    ids = np.arange(n, dtype="float32")[:, None]
    # A fixed shuffled order (NumPy, not `Dataset.shuffle`, whose order also depends on
    # the process's global TF seed): every process must see the same batches.
    order = np.random.default_rng(5).permutation(n)
    rows = (np.concatenate([x, ids], axis=1)[order], y[order])
    return tf.data.Dataset.from_tensor_slices(rows).batch(batch_size)


def train_dataset(strategy, epochs=3):
    """Train on `dataset()` with `id_loss_fn`; returns weights, history and the ids seen."""
    import keras

    from tfcraft.training import Trainer

    del SEEN[:]
    trainer = Trainer(
        build,
        optimizer=keras.optimizers.Adam(0.05),
        loss_fn=id_loss_fn,
        metrics=["mae"],
        seed=3,
        strategy=strategy,
        jit_compile=False,  # py_function has no XLA kernel
    )
    history = trainer.fit(dataset(), epochs=epochs, verbose=0)
    evaluated = trainer.evaluate(dataset())
    return {
        "weights": trainer.get_weights(),
        "history": history.history,
        "evaluate": evaluated,
        "seen": list(SEEN),
    }


def train(
    checkpoint_dir=None,
    epochs=4,
    resume=False,
    kill_worker_at_epoch=None,
    jsonl=None,
    with_dataset=False,
):
    """Train under MultiWorkerMirroredStrategy; worker 1 may SIGKILL itself mid-run.

    With `with_dataset`, also train on a tf.data pipeline (`train_dataset`).
    """
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # before any other TF op

    from tfcraft.training import Callback, JSONLLogger

    class KillAt(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
            if epoch == kill_worker_at_epoch and index == 1:
                print(f"worker 1 kills itself at epoch {epoch}", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)

    loggers = [JSONLLogger(jsonl)] if jsonl else []
    trainer = make_trainer(strategy, checkpoint_dir, [KillAt(), *loggers])
    history = trainer.fit(data(), epochs=epochs, batch_size=8, resume=resume, verbose=0)
    store = trainer._checkpoints
    return {
        **report_environment(),
        "dataset": train_dataset(strategy) if with_dataset else None,
        "weights": trainer.get_weights(),
        "history": history.history,
        "chief": trainer._distribution.is_chief,
        "checkpoint_dir": None if store is None else str(store.directory),
        "replicas": trainer._distribution.strategy.num_replicas_in_sync,
        "active_callbacks": [
            type(c).__name__ for c in trainer._distribution.callbacks(trainer.callbacks)
        ],
    }
