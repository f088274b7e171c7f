"""`MCDropout`: dropout that stays on at prediction time (Gal & Ghahramani, 2016)."""

from __future__ import annotations

import keras

from tfcraft._validation import check_float_in_range
from tfcraft.layers._random_state import SeedStateMixin

__all__ = ["MCDropout"]


@keras.saving.register_keras_serializable(package="tfcraft")
class MCDropout(SeedStateMixin, keras.layers.Dropout):
    """Dropout that is active in training *and* at prediction time.

    Averaging many stochastic forward passes of a network with MC dropout
    approximates Bayesian model averaging over a variational posterior, so
    `tfcraft.bayes` treats it like the variational layers (`stochastic = True`).
    Kept units are scaled by `1 / (1 - rate)`, so the expected output equals the
    input. The mask comes from a `keras.random.SeedGenerator` owned by the layer,
    whose state is saved with the model (`.keras` and `tf.train.Checkpoint`).

    Example:

    >>> import numpy as np
    >>> layer = MCDropout(0.5, seed=0)
    >>> x = np.ones((1, 1000), "float32")
    >>> bool((layer(x, training=False).numpy() == 0).any())
    True

    Args:
        rate: Float in [0, 1), the fraction of units dropped.
        noise_shape: Optional shape of the binary mask, as in `keras.layers.Dropout`.
        seed: Optional integer seed of the dropout masks.
        **kwargs: Base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Input shape:
        Any.

    Output shape:
        Same as the input.

    References:
        Gal & Ghahramani, "Dropout as a Bayesian Approximation", ICML 2016.
    """

    stochastic = True

    def __init__(self, rate: float, noise_shape=None, seed: int | None = None, **kwargs):
        check_float_in_range("rate", rate, 0.0, 1.0, low_inclusive=True)
        super().__init__(rate=rate, noise_shape=noise_shape, seed=seed, **kwargs)

    def call(self, inputs, training=None):
        """Drop units whatever `training` says."""
        del training  # Deliberately ignored: the point of MC dropout.
        return super().call(inputs, training=True)
