"""The Flipout estimator shared by `DenseFlipout` and `Conv2DFlipout` (Wen et al. 2018)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import tensorflow as tf
from keras import ops

__all__ = ["flipout", "rademacher"]


def rademacher(shape: Sequence, dtype, seed_generator) -> tf.Tensor:
    """Random signs in {-1, +1} of `shape`, drawn from `seed_generator`.

    Example:

    >>> import keras, numpy as np
    >>> signs = rademacher((1000,), "float32", keras.random.SeedGenerator(0))
    >>> sorted(np.unique(signs).tolist())
    [-1.0, 1.0]
    """
    bits = keras.random.randint(shape, 0, 2, dtype="int32", seed=seed_generator)
    return ops.cast(2 * bits - 1, dtype)


def flipout(
    inputs,
    loc,
    scale,
    linear: Callable,
    input_sign_shape: Sequence,
    output_sign_shape: Sequence,
    seed_generator,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Flipout estimate of `linear(inputs, W)` for a kernel `W ~ N(loc, scale**2)`.

    One perturbation `delta = scale * eps` is drawn and decorrelated across
    examples with random signs: `linear(inputs, loc) + linear(inputs * s_in,
    delta) * s_out`. Each example then sees a valid posterior sample. The draws
    are made in a fixed order (`eps`, `s_in`, `s_out`), so a seed gives the
    same noise in every layer type.

    Example:

    >>> import numpy as np
    >>> x, loc = np.ones((3, 2), "float32"), np.zeros((2, 4), "float32")
    >>> outputs, kernel = flipout(x, loc, np.ones((2, 4), "float32"), ops.matmul,
    ...                           (3, 2), (3, 4), keras.random.SeedGenerator(0))
    >>> outputs.shape, kernel.shape
    (TensorShape([3, 4]), TensorShape([2, 4]))

    Args:
        inputs: The layer inputs.
        loc: Posterior mean of the kernel, in the dtype of `inputs`.
        scale: Posterior standard deviation of the kernel, same shape and dtype.
        linear: `(inputs, kernel) -> outputs`, linear in both (matmul, convolution).
        input_sign_shape: Shape of `s_in`, broadcastable to `inputs`.
        output_sign_shape: Shape of `s_out`, broadcastable to the outputs.
        seed_generator: The layer's `keras.random.SeedGenerator`.

    Returns:
        `(outputs, loc + delta)`: the outputs and the perturbed kernel, whose
        sample a Monte Carlo KL estimate can use.

    References:
        Wen et al., "Flipout: Efficient Pseudo-Independent Weight Perturbations
        on Mini-Batches", ICLR 2018.
    """
    delta = scale * keras.random.normal(ops.shape(loc), dtype=loc.dtype, seed=seed_generator)
    sign_input = rademacher(input_sign_shape, inputs.dtype, seed_generator)
    sign_output = rademacher(output_sign_shape, inputs.dtype, seed_generator)
    perturbation = linear(inputs * sign_input, delta) * sign_output
    return linear(inputs, loc) + perturbation, loc + delta
