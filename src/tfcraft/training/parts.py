"""Small pieces the Trainer composes: default callbacks and the custom-step adapter.

Example:

>>> history, extra = default_callbacks(verbose=0)
>>> hasattr(history, "history"), extra
(True, [])
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from tfcraft.training.callbacks import History, ProgressBar
from tfcraft.training.callbacks_base import Callback

__all__ = ["CustomStep", "default_callbacks"]


def default_callbacks(verbose: int) -> tuple[Callback, list[Callback]]:
    """The `History` the Trainer returns, plus a `ProgressBar` when `verbose > 0`."""
    return History(), ([ProgressBar(verbose=verbose)] if verbose else [])


class CustomStep:
    """Adapts a user `train_step(model, batch) -> logs` to the loop interface."""

    def __init__(self, fn: Callable, model) -> None:
        self.fn = fn
        self.model = model
        self.variables: dict = {}

    def __call__(self, batch):
        """Run the user's step; adds `nonfinite` from its `loss` log, if any."""
        logs = {k: tf.cast(v, tf.float32) for k, v in dict(self.fn(self.model, batch)).items()}
        finite = tf.reduce_all(tf.math.is_finite(logs["loss"])) if "loss" in logs else True
        return {**logs, "nonfinite": tf.cast(tf.logical_not(finite), tf.int32)}

    def results(self):
        """No running results: the step's own logs are reported as they come."""
        return {}

    def reset_metrics(self):
        """Custom steps keep no running metrics."""
