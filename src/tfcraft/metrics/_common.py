"""Tensor helpers shared by the metric modules (package-internal, like `tfcraft._validation`)."""

from __future__ import annotations

import tensorflow as tf
from keras import ops

__all__ = ["as_floating"]


def as_floating(x) -> tf.Tensor:
    """`x` as a tensor, cast to float32 unless it already has a floating dtype.

    Example:

    >>> as_floating([1, 2]).dtype.name, as_floating([1.0]).dtype.name
    ('float32', 'float32')
    """
    x = ops.convert_to_tensor(x)
    return x if x.dtype.is_floating else ops.cast(x, "float32")
