"""Training and scoring shared by the neural detectors (flow, VAE), through `tfcraft.training`.

The loss is a *trimmed* negative log-likelihood: in every batch only the
`support_fraction` rows with the lowest NLL count (the trimmed-likelihood
estimator of Neykov et al. 2007, MCD's principle applied by stochastic
gradient), so outliers in the training data do not pull the density to them.

Example:

>>> import tensorflow as tf
>>> float(trimmed_mean(tf.constant([1.0, 2.0, 3.0, 100.0]), 0.75))
2.0
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from tfcraft.training import EarlyStopping, Trainer

__all__ = [
    "CompiledScorer",
    "check_neural_params",
    "fit_density",
    "split_validation",
    "trimmed_mean",
]

STEPS_BUDGET = 1500
MAX_EPOCHS = 300
VALIDATION_FRACTION = 0.15
XLA_MIN_STEPS = 100  # XLA's compile (seconds) only pays off over many steps


def trimmed_mean(values: tf.Tensor, fraction: float) -> tf.Tensor:
    """Mean of the `ceil(fraction * n)` smallest entries of the 1-D tensor `values`."""
    if fraction >= 1.0:
        return tf.reduce_mean(values)
    n = tf.shape(values)[0]
    keep = tf.maximum(1, tf.cast(tf.math.ceil(fraction * tf.cast(n, tf.float32)), tf.int32))
    smallest = -tf.math.top_k(-values, k=keep, sorted=False).values
    return tf.reduce_mean(smallest)


def check_neural_params(detector) -> None:
    """Check the training arguments every neural detector shares."""
    f = detector.support_fraction
    if isinstance(f, bool) or not isinstance(f, int | float) or not 0.0 < f <= 1.0:
        raise ValueError(
            "Argument `support_fraction` must be a float in (0, 1]. "
            f"Received: support_fraction={f!r}"
        )
    e = detector.epochs
    if not (e == "auto" or (isinstance(e, int) and not isinstance(e, bool) and e >= 1)):
        raise ValueError(
            f"Argument `epochs` must be a positive integer or 'auto'. Received: epochs={e!r}"
        )
    b = detector.batch_size
    if isinstance(b, bool) or not isinstance(b, int) or b < 1:
        raise ValueError(
            f"Argument `batch_size` must be a positive integer. Received: batch_size={b!r}"
        )
    lr = detector.learning_rate
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr > 0:
        raise ValueError(
            f"Argument `learning_rate` must be a positive float. Received: learning_rate={lr!r}"
        )


def split_validation(X: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded `VALIDATION_FRACTION` split of `X` for early stopping: `(train, validation)`."""
    order = np.random.default_rng(seed).permutation(len(X))
    num_val = max(1, round(VALIDATION_FRACTION * len(X)))
    return X[order[num_val:]], X[order[:num_val]]


def fit_density(model: keras.Model, X, X_val, detector, seed: int) -> dict[str, list[float]]:
    """Train `model` (its `nll(x, training)` gives per-row NLL) with the Trainer.

    Returns the Trainer's per-epoch logs (`loss`, `nll`, `val_loss`, ...).

    `X` and `X_val` are arrays or `tf.data.Dataset`s of feature batches.
    `epochs="auto"` gives about `STEPS_BUDGET` steps (at most `MAX_EPOCHS`
    epochs); early stopping on the validation NLL restores the best weights.
    """
    fraction = float(detector.support_fraction)

    def loss_fn(model, batch, training):
        x = batch[0] if isinstance(batch, tuple | list) else batch
        nll = model.nll(x, training=training)
        return trimmed_mean(nll, fraction), {"nll": tf.reduce_mean(nll)}

    batch_size = int(detector.batch_size)
    if detector.epochs == "auto":
        if isinstance(X, tf.data.Dataset):
            epochs = 20
        else:
            steps = max(1, math.ceil(len(X) / batch_size))
            epochs = int(min(MAX_EPOCHS, max(5, math.ceil(STEPS_BUDGET / steps))))
    else:
        epochs = int(detector.epochs)
    jit_compile = "auto"
    if not isinstance(X, tf.data.Dataset) and epochs * math.ceil(len(X) / batch_size) < (
        XLA_MIN_STEPS
    ):
        jit_compile = False
    callbacks = [
        EarlyStopping(
            monitor="val_loss", patience=int(detector.patience), restore_best_weights=True
        )
    ]
    trainer = Trainer(
        model,
        optimizer=keras.optimizers.Adam(float(detector.learning_rate)),
        loss_fn=loss_fn,
        clip="global_norm:10.0",
        seed=seed,
        callbacks=callbacks,
        jit_compile=jit_compile,
    )
    history = trainer.fit(X, epochs=epochs, batch_size=batch_size, validation_data=X_val, verbose=0)
    return {key: [float(v) for v in values] for key, values in history.history.items()}


class CompiledScorer:
    """Per-row values of `function(x)` in fixed-size chunks, one cached `tf.function`.

    The signature has a free batch dimension, so calling it with any number of
    rows never retraces; memory is bounded by `chunk_size` rows.
    """

    def __init__(self, function, num_features: int, chunk_size: int = 8192) -> None:
        spec = tf.TensorSpec([None, num_features], tf.float32)
        self._function = tf.function(function, input_signature=[spec])
        self.chunk_size = chunk_size

    def __call__(self, X) -> np.ndarray:
        """Scores of `X` (an array or a `tf.data.Dataset`) through one cached function."""
        if isinstance(X, tf.data.Dataset):
            parts = [self._function(tf.cast(_features(b), tf.float32)).numpy() for b in X]
            return np.concatenate(parts) if parts else np.zeros((0,), np.float32)
        X = np.asarray(X, dtype=np.float32)
        parts = [
            self._function(tf.constant(X[start : start + self.chunk_size])).numpy()
            for start in range(0, max(len(X), 1), self.chunk_size)
        ]
        return np.concatenate(parts)


def _features(batch):
    return batch[0] if isinstance(batch, tuple | list) else batch
