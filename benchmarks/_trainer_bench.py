"""What `trainer_vs_fit.py` measures: its data, model, and one timing function per method.

Each `bench_*` returns samples/s (or seconds) of one method on the same MLP and data;
`trainer_vs_fit.py` builds the rows from them, runs the rounds and writes the report.
"""

from __future__ import annotations

import statistics
import time

import keras
import numpy as np
import tensorflow as tf
from _common import timed_median

BATCH_SIZE = 256
HIDDEN_UNITS = 256
LEARNING_RATE = 1e-3
CLIPNORM = 1.0
NUM_FEATURES = 64
KERAS_SETTINGS = (
    ("default", {}),
    *(
        (
            f"steps_per_execution={spe}, jit_compile={jit}",
            {"steps_per_execution": spe, "jit_compile": jit},
        )
        for spe in (16, 64, 256)
        for jit in (False, True)
    ),
)
KERAS_INPUTS = {
    "numpy": "NumPy arrays",
    "tfdata": "tf.data pipeline",
    "generator": "Python generator",
    "pydataset": "keras.utils.PyDataset",
}


# ------------------------------------------------------------------------ data


def make_regression(num_rows: int, num_features: int, seed: int = 0):
    """Seeded synthetic regression data: a smooth function of x plus noise, float32."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_rows, num_features)).astype("float32")
    w = rng.normal(size=(num_features, 1)) / np.sqrt(num_features)
    y = np.tanh(x @ w) + 0.1 * rng.normal(size=(num_rows, 1))
    return x, y.astype("float32")


def load_diabetes_split(seed: int = 0):
    """The 442-row diabetes data (sklearn), standardised, split 80/20 at random."""
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    x = ((x - x.mean(0)) / x.std(0)).astype("float32")
    y = ((y - y.mean()) / y.std()).reshape(-1, 1).astype("float32")
    order = np.random.default_rng(seed).permutation(len(x))
    cut = round(0.8 * len(x))
    train, hold = order[:cut], order[cut:]
    return (x[train], y[train]), (x[hold], y[hold])


def make_pipeline(x, y, prefetch) -> tf.data.Dataset:
    """The user's pipeline: `from_tensor_slices((x, y)).batch(256).prefetch(...)`."""
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH_SIZE).prefetch(prefetch)


def batches(x, y):
    """One epoch of the same NumPy batches, in order, as a Python generator."""
    for start in range(0, len(x), BATCH_SIZE):
        yield x[start : start + BATCH_SIZE], y[start : start + BATCH_SIZE]


def endless_batches(x, y):
    """`batches` epoch after epoch: what Keras needs for a generator over several epochs."""
    while True:
        yield from batches(x, y)


class ArrayBatches(keras.utils.PyDataset):
    """The same NumPy batches as a `keras.utils.PyDataset` (Keras's documented form)."""

    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def __len__(self):
        return -(-len(self.x) // BATCH_SIZE)

    def __getitem__(self, index):
        start = index * BATCH_SIZE
        return self.x[start : start + BATCH_SIZE], self.y[start : start + BATCH_SIZE]


def keras_inputs(kind: str, x, y, prefetch) -> dict:
    """`model.fit` keyword arguments feeding `(x, y)` in the form `kind`."""
    if kind == "numpy":
        return {"x": x, "y": y, "batch_size": BATCH_SIZE}
    if kind == "tfdata":
        return {"x": make_pipeline(x, y, prefetch)}
    if kind == "generator":
        return {"x": endless_batches(x, y), "steps_per_epoch": -(-len(x) // BATCH_SIZE)}
    if kind == "pydataset":
        return {"x": ArrayBatches(x, y)}
    raise ValueError(f"Unknown input kind. Received: kind={kind!r}")


# ----------------------------------------------------------------------- model
def make_mlp(num_inputs: int, weights=None) -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input((num_inputs,)),
            keras.layers.Dense(HIDDEN_UNITS, activation="relu"),
            keras.layers.Dense(HIDDEN_UNITS, activation="relu"),
            keras.layers.Dense(1),
        ]
    )
    if weights is not None:
        model.set_weights(weights)
    return model


def make_adam(clipped: bool = True) -> keras.optimizers.Optimizer:
    clipnorm = CLIPNORM if clipped else None
    return keras.optimizers.Adam(learning_rate=LEARNING_RATE, global_clipnorm=clipnorm)


def epoch_timer_class(callback_class):
    """A callback class (Keras' or tfcraft's base) recording each epoch's wall time."""

    class EpochTimer(callback_class):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

    return EpochTimer


KerasEpochTimer = epoch_timer_class(keras.callbacks.Callback)


# ---------------------------------------------------------------- keras, eager
def bench_keras_fit(weights, x, y, kind, settings, epochs, prefetch) -> float:
    """Samples/s of `model.fit` on `kind` input, median over the epochs after the first."""
    model = make_mlp(x.shape[1], weights)
    model.compile(optimizer=make_adam(), loss="mse", **settings)
    timer = KerasEpochTimer()
    model.fit(**keras_inputs(kind, x, y, prefetch), epochs=1 + epochs, verbose=0, callbacks=[timer])
    return len(x) / timed_median(timer.seconds)


def bench_eager(weights, x, y, warmup_steps: int, chunk_steps: int, chunks: int) -> float:
    """Samples/s of the textbook eager loop, median of `chunks` timed chunks."""
    model = make_mlp(x.shape[1], weights)
    optimizer = make_adam()
    loss_fn = keras.losses.MeanSquaredError()
    dataset = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .shuffle(len(x), seed=0, reshuffle_each_iteration=True)
        .batch(BATCH_SIZE)
        .repeat()
    )
    iterator = iter(dataset)

    def run(num_steps):
        for _ in range(num_steps):
            x_batch, y_batch = next(iterator)
            with tf.GradientTape() as tape:
                loss = loss_fn(y_batch, model(x_batch, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return float(loss)

    run(warmup_steps)
    seconds = []
    for _ in range(chunks):
        start = time.perf_counter()
        run(chunk_steps)
        seconds.append(time.perf_counter() - start)
    return chunk_steps * BATCH_SIZE / statistics.median(seconds)


def bench_xla_epoch(weights, x, y, epochs: int, seed: int = 0) -> float:
    """Samples/s of a whole epoch as one XLA function over resident tensors."""
    model = make_mlp(x.shape[1], weights)
    optimizer = make_adam()
    variables = model.trainable_variables
    optimizer.build(variables)
    loss_fn = keras.losses.MeanSquaredError()
    features, targets = tf.constant(x), tf.constant(y)
    num_rows, steps = len(x), len(x) // BATCH_SIZE  # full batches only

    @tf.function(jit_compile=True)
    def run_epoch(epoch):
        seed_pair = tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
        keys = tf.random.stateless_uniform(
            [num_rows], seed=seed_pair, minval=None, maxval=None, dtype=tf.int64
        )
        order = tf.argsort(keys, stable=True)

        def body(step, total):
            index = tf.slice(order, [step * BATCH_SIZE], [BATCH_SIZE])
            x_batch, y_batch = tf.gather(features, index), tf.gather(targets, index)
            with tf.GradientTape() as tape:
                loss = loss_fn(y_batch, model(x_batch, training=True))
            optimizer.apply(tape.gradient(loss, variables), variables)
            return step + 1, total + loss

        _, total = tf.while_loop(
            lambda step, _: step < steps, body, (tf.constant(0), tf.constant(0.0))
        )
        return total / steps

    seconds = []
    for epoch in range(1 + epochs):
        start = time.perf_counter()
        run_epoch(tf.constant(epoch)).numpy()
        seconds.append(time.perf_counter() - start)
    return steps * BATCH_SIZE / timed_median(seconds)


# --------------------------------------------------------------------- trainer
def import_trainer():
    """The tfcraft training API, or the reason it cannot be used."""
    try:
        from tfcraft.training import Callback, EarlyStopping, Trainer, clipping
    except Exception as error:  # report, do not crash the Keras rows
        return None, f"{type(error).__name__}: {error}"
    return {
        "Trainer": Trainer,
        "Callback": Callback,
        "EarlyStopping": EarlyStopping,
        "clipping": clipping,
    }, None


def make_trainer(api, weights, num_inputs, callbacks=()):
    return api["Trainer"](
        make_mlp(num_inputs, weights),
        optimizer=make_adam(clipped=False),
        loss="mse",
        clip=api["clipping"].ByGlobalNorm(CLIPNORM),
        seed=0,
        callbacks=list(callbacks),
    )


def make_epoch_timer(callback_class):
    """A tfcraft callback recording each epoch's wall time."""
    return epoch_timer_class(callback_class)()


def bench_trainer_long(api, weights, data, num_rows, epochs) -> float:
    """Samples/s of `Trainer.fit(data, epochs=1 + epochs)`, median over epochs after the first."""
    timer = make_epoch_timer(api["Callback"])
    trainer = make_trainer(api, weights, NUM_FEATURES, [timer])
    trainer.fit(data, epochs=1 + epochs, batch_size=BATCH_SIZE, verbose=0)
    return num_rows / timed_median(timer.seconds)


def bench_trainer_calls(api, weights, data, num_rows, calls, notes) -> float:
    """Samples/s of repeated one-epoch `Trainer.fit(data, epochs=1)` calls, each call timed."""
    trainer = make_trainer(api, weights, NUM_FEATURES)
    seconds = []
    for _ in range(1 + calls):
        start = time.perf_counter()
        trainer.fit(data, epochs=1, batch_size=BATCH_SIZE, verbose=0)
        seconds.append(time.perf_counter() - start)
    notes.append(
        f"trainer/tfdata/per-call: first call {seconds[0]:.2f} s (compiles), "
        f"then {', '.join(f'{s:.3f}' for s in seconds[1:])} s"
    )
    return num_rows / timed_median(seconds)


def bench_small(api, train, validation, epochs, patience, restore, notes, key) -> float:
    """Samples/s (training rows) of one `fit` of many epochs on small data, after a warm-up fit."""
    callbacks = []
    if validation is not None:
        callbacks.append(
            api["EarlyStopping"](
                monitor="val_loss", patience=patience, restore_best_weights=restore
            )
        )
    keras.utils.set_random_seed(1)
    weights = make_mlp(train[0].shape[1]).get_weights()
    trainer = make_trainer(api, weights, train[0].shape[1], callbacks)
    kwargs = {"batch_size": BATCH_SIZE, "validation_data": validation, "verbose": 0}
    trainer.fit(train, epochs=2, **kwargs)  # compiles, also the validation graph
    start = time.perf_counter()
    history = trainer.fit(train, epochs=epochs, **kwargs)
    seconds = time.perf_counter() - start
    ran = len(history.history["loss"])
    if ran != epochs:
        notes.append(f"{key}: stopped after {ran} of {epochs} epochs")
    return ran * len(train[0]) / seconds
