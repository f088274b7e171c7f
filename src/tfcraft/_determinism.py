"""Seeding and deterministic ops for bit-for-bit reproducible runs."""

from __future__ import annotations

import keras
import tensorflow as tf

from tfcraft._validation import check_seed

__all__ = ["enable_determinism"]


def enable_determinism(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TensorFlow ops deterministic.

    After this call the same seed gives the same weights, bit for bit, also
    after resuming from a checkpoint.

    Example:

    >>> enable_determinism(0)
    """
    seed = check_seed("seed", seed, allow_none=False)
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
