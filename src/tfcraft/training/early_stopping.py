"""`EarlyStopping`: stop when a monitored quantity stops improving (Keras' rule).

Its state (`wait`, `best`, `best_epoch`, `stopped_epoch`) lives in TensorFlow
variables and one update function of tensors serves both ways of running it:
called eagerly from `on_epoch_end`, or inside the training graph, where the
Trainer runs several tiny epochs per call and lets the graph stop itself
(`graph_epoch_end`). With `restore_best_weights=True` and a real Trainer, the
best weights are kept in variables too, which the Trainer checkpoints, so they
survive a resume.

Example:

>>> import types
>>> trainer = types.SimpleNamespace(stop_training=False)
>>> stopper = EarlyStopping(monitor="loss", patience=1)
>>> stopper.set_trainer(trainer)
>>> stopper.on_train_begin()
>>> for epoch, loss in enumerate([1.0, 0.5, 0.6, 0.7]):
...     stopper.on_epoch_end(epoch, {"loss": loss})
>>> trainer.stop_training, stopper.stopped_epoch, stopper.best
(True, 3, 0.5)
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import tensorflow as tf

from tfcraft._validation import check_choice, check_positive_float
from tfcraft.layers.walk import metric_direction
from tfcraft.training.callbacks_base import Callback

__all__ = ["EarlyStopping", "infer_mode"]

_MAXIMIZED_WORDS = ("acc", "auc", "precision", "recall", "f1", "fbeta", "r2", "iou")
_MAXIMIZED_WORDS += ("reward", "return", "score")
_MINIMIZED_WORDS = ("loss", "error", "nll", "kl", "mse", "mae", "mape", "rmse", "ece", "entropy")
_MINIMIZED_WORDS += ("brier", "crps", "width", "shortfall", "pinball")


def infer_mode(monitor: str, metrics: list | tuple = ()) -> str | None:
    """`"min"`, `"max"` or None: what `monitor` should do, as Keras' `mode="auto"`.

    The direction a metric declares wins (`direction = "up"`/`"down"` on tfcraft
    metrics, Keras' own on its metrics); the name is only a fallback.

    Example:

    >>> infer_mode("val_brier_score"), infer_mode("val_accuracy"), infer_mode("widgets")
    ('min', 'max', None)
    """
    name = monitor.removeprefix("val_")
    for metric in metrics:
        if getattr(metric, "name", None) == name:
            direction = metric_direction(metric)
            if direction is not None:
                return "max" if direction == "up" else "min"
    lowered = name.lower()
    if any(word in lowered for word in _MINIMIZED_WORDS):
        return "min"
    if any(word in lowered for word in _MAXIMIZED_WORDS):
        return "max"
    return None


def _check_non_negative_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"Argument `{name}` must be a non-negative integer. Received: {name}={value!r}"
        )
    if value < 0:
        raise ValueError(
            f"Argument `{name}` must be a non-negative integer. Received: {name}={value!r}"
        )
    return int(value)


class EarlyStopping(Callback):
    """Stop training when a monitored quantity has stopped improving.

    Same rule as `keras.callbacks.EarlyStopping`: after each epoch from
    `start_from_epoch` on, a value better than the best by more than `min_delta`
    resets the wait; otherwise, once `patience` epochs passed without
    improvement, `trainer.stop_training` is set. A missing `monitor` key warns
    and skips the epoch, as in Keras.

    State (`wait`, `best`, `best_epoch`, `stopped_epoch`) is saved with each
    checkpoint, and with the Trainer so are the best weights: a resumed run
    restores the best epoch's weights even when it came before the resume.
    With tiny in-memory data the Trainer may run this callback's rule inside
    the training graph, several epochs per call (see `Trainer`); the epochs it
    stops on are the same.

    Args:
        monitor: Log key to watch. Defaults to `"val_loss"`.
        patience: Non-negative int; epochs without improvement before stopping.
            Defaults to `0`.
        mode: `"min"`, `"max"` or `"auto"`: the direction the metric declares
            (tfcraft and Keras metrics do), else guessed from the name (losses
            and errors go down, accuracy/AUC/recall-like metrics go up).
            Defaults to `"auto"`.
        min_delta: Non-negative float; smaller changes do not count as an
            improvement. Defaults to `0.0`.
        restore_best_weights: Whether to load the best epoch's weights when
            training ends. Defaults to `False`.
        start_from_epoch: Non-negative int; epochs of warm-up that are not
            monitored. Defaults to `0`.
        baseline: Optional value the monitored quantity must beat to reset the
            wait, as in Keras. Defaults to `None`.

    Attributes:
        best: Best monitored value so far (`None` before the first).
        best_epoch: Epoch of `best`.
        wait: Epochs since the last improvement.
        stopped_epoch: Epoch at which training was stopped, `0` if it was not.
    """

    epoch_sync = True  # it stops training and may restore weights, but can do so in the graph

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 0,
        mode: str = "auto",
        min_delta: float = 0.0,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
        baseline: float | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(monitor, str):
            raise TypeError(f"Argument `monitor` must be a string. Received: monitor={monitor!r}")
        self.monitor = monitor
        self.graph_logs_needed = (monitor,)
        self.patience = _check_non_negative_int("patience", patience)
        self.mode = check_choice("mode", mode, ("auto", "min", "max"))
        self.min_delta = check_positive_float("min_delta", min_delta, allow_zero=True)
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = _check_non_negative_int("start_from_epoch", start_from_epoch)
        self.baseline = baseline
        self._direction = None if mode == "auto" else mode
        self._state = {
            "wait": tf.Variable(0, dtype=tf.int64, trainable=False),
            "best": tf.Variable(0.0, dtype=tf.float64, trainable=False),
            "has_best": tf.Variable(False, trainable=False),
            "best_epoch": tf.Variable(0, dtype=tf.int64, trainable=False),
            "stopped_epoch": tf.Variable(0, dtype=tf.int64, trainable=False),
        }
        self._has_weights = tf.Variable(False, trainable=False)
        self._best_variables: list[tf.Variable] | None = None  # with a real Trainer
        self._best_arrays: list | None = None  # with a stand-in that only has get_weights
        self._resumed = False

    # ------------------------------------------------------------------ state
    @property
    def wait(self) -> int:
        """Epochs since the last improvement."""
        return int(self._state["wait"].numpy())

    @property
    def best(self) -> float | None:
        """Best monitored value so far, `None` before the first."""
        return float(self._state["best"].numpy()) if bool(self._state["has_best"]) else None

    @property
    def best_epoch(self) -> int:
        """Epoch of `best`."""
        return int(self._state["best_epoch"].numpy())

    @property
    def stopped_epoch(self) -> int:
        """Epoch at which training was stopped, `0` if it was not."""
        return int(self._state["stopped_epoch"].numpy())

    def set_trainer(self, trainer) -> None:
        """Attach the Trainer; with `restore_best_weights`, make variables for the best weights."""
        super().set_trainer(trainer)
        if self.mode == "auto":
            self._direction = infer_mode(self.monitor, getattr(trainer, "metrics", None) or ())
        if self._direction is None:
            raise ValueError(
                f"EarlyStopping cannot tell whether `monitor` should go down or up (no "
                "metric of that name declares a direction). Pass mode='min' or mode='max'. "
                f"Received: monitor={self.monitor!r}, mode='auto'"
            )
        weights = getattr(trainer, "weight_variables", None)
        if not (self.restore_best_weights and callable(weights)):
            return
        shapes = [tuple(v.shape) for v in weights()]
        if self._best_variables is None or shapes != [tuple(v.shape) for v in self._best_variables]:
            self._best_variables = [
                tf.Variable(tf.zeros_like(v), trainable=False, name="best_weight")
                for v in weights()
            ]

    def checkpoint_variables(self) -> dict:
        """The best weights, for the Trainer's checkpoint (empty without them)."""
        return {"best_weights": list(self._best_variables or [])}

    def _reset(self) -> None:
        for name, variable in self._state.items():
            variable.assign(False if name == "has_best" else tf.zeros((), variable.dtype))
        self._has_weights.assign(False)
        self._best_arrays = None
        self._resumed = False

    # ------------------------------------------------------------------ rule
    def _better(self, value, reference):
        if self._direction == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def _update(self, epoch, current):
        """Keras' rule on tensors; returns `(stop, improved)` and updates the state."""
        state = self._state
        if tf.is_tensor(current):
            current = tf.cast(current, tf.float64)
        else:  # a Python float from the logs: keep all its digits
            current = tf.constant(float(current), tf.float64)
        epoch = tf.cast(epoch, tf.int64)
        active = epoch >= self.start_from_epoch
        improved = tf.logical_and(
            active,
            tf.logical_or(tf.logical_not(state["has_best"]), self._better(current, state["best"])),
        )
        resets = improved
        if self.baseline is not None:
            resets = tf.logical_and(improved, self._better(current, float(self.baseline)))
        wait = state["wait"] + 1
        wait = tf.where(active, tf.where(resets, tf.zeros_like(wait), wait), state["wait"])
        stop = tf.logical_and(
            tf.logical_and(active, tf.logical_not(improved)),
            tf.logical_and(wait >= self.patience, epoch > 0),
        )
        state["wait"].assign(wait)
        state["best"].assign(tf.where(improved, current, state["best"]))
        state["has_best"].assign(tf.logical_or(state["has_best"], improved))
        state["best_epoch"].assign(tf.where(improved, epoch, state["best_epoch"]))
        state["stopped_epoch"].assign(tf.where(stop, epoch, state["stopped_epoch"]))
        return stop, improved

    def _keep_best_variables(self, improved) -> None:
        def copy():
            for best, variable in zip(
                self._best_variables, self.trainer.weight_variables(), strict=True
            ):
                best.assign(variable)
            self._has_weights.assign(True)
            return tf.constant(True)

        tf.cond(improved, copy, lambda: tf.constant(False))

    def graph_epoch_end(self, epoch, logs: dict) -> tf.Tensor:
        """The epoch-end rule inside the training graph; returns whether to stop."""
        stop, improved = self._update(epoch, logs[self.monitor])
        if self._best_variables is not None:
            self._keep_best_variables(improved)
        return stop

    # ----------------------------------------------------------------- hooks
    def on_train_begin(self, logs: dict | None = None) -> None:
        """Reset the state, unless it was just restored from a checkpoint."""
        if not self._resumed:
            self._reset()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Compare the monitored value to the best and stop when patience runs out."""
        current = (logs or {}).get(self.monitor)
        if current is None:
            warnings.warn(
                f"Early stopping conditioned on metric `{self.monitor}` which is not "
                f"available. Available metrics are: {','.join(logs or {})}",
                stacklevel=2,
            )
            return
        stop, improved = self._update(epoch, current)
        if self.restore_best_weights and bool(improved):
            if self._best_variables is not None:
                self._keep_best_variables(improved)
            else:
                self._best_arrays = self.trainer.get_weights()
                self._has_weights.assign(True)
        if bool(stop):
            self.trainer.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        """Restore the best weights if asked and they were kept."""
        if self.restore_best_weights and bool(self._has_weights):
            if self._best_variables is not None:
                for variable, best in zip(
                    self.trainer.weight_variables(), self._best_variables, strict=True
                ):
                    variable.assign(best)
            else:
                self.trainer.set_weights(self._best_arrays)
        elif self.restore_best_weights and self.best is not None:
            warnings.warn(
                f"EarlyStopping cannot restore the best weights (epoch {self.best_epoch}): "
                "they were not kept across the resume. Keeping the last weights; load the "
                f"checkpoint of epoch {self.best_epoch} if it was kept.",
                stacklevel=2,
            )
        self._resumed = False

    def state_dict(self) -> dict[str, Any]:
        """`wait`, `best`, `best_epoch`, `stopped_epoch` and whether best weights are kept."""
        kept = bool(self._has_weights) and self._best_variables is not None
        return {
            "wait": self.wait,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "stopped_epoch": self.stopped_epoch,
            "best_weights_kept": kept,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue counting from a checkpoint; the next `on_train_begin` keeps it."""
        best = state.get("best")
        self._state["wait"].assign(int(state.get("wait", 0)))
        self._state["best"].assign(0.0 if best is None else float(best))
        self._state["has_best"].assign(best is not None)
        self._state["best_epoch"].assign(int(state.get("best_epoch", 0)))
        self._state["stopped_epoch"].assign(int(state.get("stopped_epoch", 0)))
        # The best weights themselves come back with the Trainer's checkpoint.
        kept = bool(state.get("best_weights_kept")) and self._best_variables is not None
        self._has_weights.assign(kept)
        self._best_arrays = None
        self._resumed = True
