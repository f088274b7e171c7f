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


def train(checkpoint_dir=None, epochs=4, resume=False, kill_worker_at_epoch=None, jsonl=None):
    """Train under MultiWorkerMirroredStrategy; worker 1 may SIGKILL itself mid-run."""
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # before any other TF op

    from tfcraft.training import Callback, JSONLLogger

    class KillAt(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
            if epoch == kill_worker_at_epoch and index == 1:
                os.kill(os.getpid(), signal.SIGKILL)

    loggers = [JSONLLogger(jsonl)] if jsonl else []
    trainer = make_trainer(strategy, checkpoint_dir, [KillAt(), *loggers])
    history = trainer.fit(data(), epochs=epochs, batch_size=8, resume=resume, verbose=0)
    store = trainer._checkpoints
    return {
        "weights": trainer.get_weights(),
        "history": history.history,
        "chief": trainer._distribution.is_chief,
        "checkpoint_dir": None if store is None else str(store.directory),
        "replicas": trainer._distribution.strategy.num_replicas_in_sync,
        "active_callbacks": [
            type(c).__name__ for c in trainer._distribution.callbacks(trainer.callbacks)
        ],
    }
