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
    """Adapts a user `train_step(model, batch) -> logs` to the loop interface.

    With `skip_nonfinite` (a `NanGuard` is present) the step snapshots the float
    variables of the model and of a `tf.Module` step (its optimizers' slots, say)
    before running, and puts them back when the `loss` log or any of those
    variables is not finite afterwards: the poisoned update never lands.
    """

    def __init__(self, fn: Callable, model, skip_nonfinite: bool = False) -> None:
        self.fn = fn
        self.model = model
        self.skip_nonfinite = skip_nonfinite
        self.variables: dict = {}

    def _guarded(self) -> list:
        owners = [self.model, *([self.fn] if isinstance(self.fn, tf.Module) else [])]
        found, seen = [], set()
        for owner in owners:
            for variable in getattr(owner, "variables", []):
                if "float" in str(variable.dtype) and id(variable) not in seen:
                    seen.add(id(variable))
                    found.append(variable)
        return found

    def __call__(self, batch):
        """Run the user's step; adds `nonfinite` from its `loss` log, if any."""
        guarded = self._guarded() if self.skip_nonfinite else []
        saved = [tf.identity(v) for v in guarded]
        logs = {k: tf.cast(v, tf.float32) for k, v in dict(self.fn(self.model, batch)).items()}
        finite = tf.reduce_all(tf.math.is_finite(logs["loss"])) if "loss" in logs else True
        if guarded:
            finite = tf.logical_and(
                finite, tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in guarded])
            )

            def undo():
                for variable, value in zip(guarded, saved, strict=True):
                    variable.assign(value)
                return tf.constant(True)

            tf.cond(finite, lambda: tf.constant(False), undo)
        return {**logs, "nonfinite": tf.cast(tf.logical_not(finite), tf.int32)}

    def results(self):
        """No running results: the step's own logs are reported as they come."""
        return {}

    def reset_metrics(self):
        """Custom steps keep no running metrics."""
