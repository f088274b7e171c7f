"""Private tensor helpers shared by the metric modules."""

from __future__ import annotations

import tensorflow as tf
from keras import ops


def _floating(x) -> tf.Tensor:
    x = ops.convert_to_tensor(x)
    return x if x.dtype.is_floating else ops.cast(x, "float32")
