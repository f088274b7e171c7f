"""Built-in callbacks: history, progress, early stopping, NaN guard, loggers, LR schedule.

Every callback here follows the contract in `callbacks_base`: hooks receive logs
of Python floats (`loss`, metrics, `grad_norm`, `learning_rate`,
`nonfinite_steps`, validation entries prefixed `val_`), and stateful callbacks
expose `state_dict()`/`load_state_dict()` so a resumed run continues where the
checkpoint left off. None of them is a Keras object; none is registered.
The loggers (`TensorBoard`, `CSVLogger`, `JSONLLogger`) live in `loggers.py`
and are re-exported here.

Example:

>>> history = History()
>>> CallbackList([history]).on_epoch_end(0, {"loss": 0.5})
>>> history.history
{'loss': [0.5]}
"""

from __future__ import annotations

import inspect
import math
import numbers
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any, TextIO

import keras

from tfcraft._validation import check_choice, check_positive_float
from tfcraft.training.callbacks_base import Callback, CallbackList
from tfcraft.training.loggers import CSVLogger, JSONLLogger, TensorBoard, _check_update_freq

__all__ = [
    "CSVLogger",
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "History",
    "JSONLLogger",
    "LearningRateScheduler",
    "NanGuard",
    "ProgressBar",
    "TensorBoard",
]


class History(Callback):
    """Records the logs of every epoch, as `keras.callbacks.History` does.

    The Trainer creates one and returns it from `fit`. Its state holds the full
    lists, so a resumed run's History continues the same lists.

    Example:

    >>> history = History()
    >>> history.on_epoch_end(0, {"loss": 0.5, "val_loss": 0.75})
    >>> history.on_epoch_end(1, {"loss": 0.25, "val_loss": 0.5})
    >>> history.epoch, history.history["loss"]
    ([0, 1], [0.5, 0.25])

    Attributes:
        history: Dict mapping each log key to its list of per-epoch values.
        epoch: List of the epoch indices seen (0-based).
    """

    epoch_sync = False  # only records logs

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Append this epoch's logs."""
        self.epoch.append(int(epoch))
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)

    def state_dict(self) -> dict[str, Any]:
        """The epoch list and every history list."""
        return {"epoch": list(self.epoch), "history": {k: list(v) for k, v in self.history.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the lists saved by `state_dict`."""
        self.epoch = [int(epoch) for epoch in state.get("epoch", [])]
        self.history = {key: list(values) for key, values in state.get("history", {}).items()}


def _format_value(value: object) -> str:
    if isinstance(value, numbers.Integral):
        return str(value)
    if isinstance(value, numbers.Real):
        return f"{float(value):.4g}"
    return str(value)


def _format_logs(logs: dict | None) -> str:
    parts = [
        f"{key}: {_format_value(value)}"
        for key, value in (logs or {}).items()
        if not (key == "nonfinite_steps" and not value)  # only worth a column when > 0
    ]
    return " - ".join(parts)


def _format_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class ProgressBar(Callback):
    r"""Per-epoch progress: loss and metrics, steps/s and ETA.

    On a terminal (`stream.isatty()`), a live bar is redrawn in place with `\r`.
    Anywhere else (log files, CI) it writes plain lines with no `\r`: one per
    epoch, plus one every `update_freq` steps when that is an integer. The
    Trainer adds a `ProgressBar()` itself when `verbose > 0`; epochs and steps
    per epoch come from `trainer.params`.

    Example:

    >>> import io, types
    >>> stream = io.StringIO()
    >>> bar = ProgressBar(stream=stream)
    >>> bar.set_trainer(types.SimpleNamespace(params={"epochs": 2, "steps": 4, "verbose": 1}))
    >>> bar.on_train_begin()
    >>> bar.on_epoch_begin(0)
    >>> bar.on_epoch_end(0, {"loss": 0.25})
    >>> stream.getvalue().startswith("Epoch 1/2 - 4/4 steps")
    True

    Args:
        verbose: `0` silent, `1` live bar on a terminal (plain lines elsewhere),
            `2` one plain line per epoch always, as in Keras. Defaults to `1`.
        stream: Text stream to write to. Defaults to `sys.stdout`.
        update_freq: `"epoch"`, or an integer: in plain-line mode, also write a
            line every that many steps. Defaults to `"epoch"`.
    """

    _REDRAW_SECONDS = 0.1  # throttle live redraws; a redraw costs more than a step

    epoch_sync = False  # only records logs

    def __init__(
        self, verbose: int = 1, stream: TextIO | None = None, update_freq: str | int = "epoch"
    ) -> None:
        super().__init__()
        self.verbose = check_choice("verbose", verbose, (0, 1, 2))
        self.stream = sys.stdout if stream is None else stream
        self.update_freq = _check_update_freq(update_freq)
        self._epochs = self._steps = None
        self._epoch = 0
        self._done = 0
        self._last_line_step = 0
        self._start = self._last_draw = 0.0
        self._width = 0

    @property
    def _live(self) -> bool:
        isatty = getattr(self.stream, "isatty", None)
        return self.verbose == 1 and callable(isatty) and bool(isatty())

    def on_train_begin(self, logs: dict | None = None) -> None:
        """Read epochs and steps per epoch from `trainer.params`."""
        params = getattr(self.trainer, "params", None) or {}
        self._epochs, self._steps = params.get("epochs"), params.get("steps")

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        """Start the epoch's clock; on a terminal, print the epoch header."""
        self._epoch, self._done, self._last_line_step, self._width = epoch, 0, 0, 0
        self._start = self._last_draw = time.perf_counter()
        if self._live:
            self._write(f"{self._header()}\n")

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Redraw the live bar, or write a plain line every `update_freq` steps."""
        self._done = batch + 1
        if self.verbose == 0:
            return
        now = time.perf_counter()
        if self._live:
            if now - self._last_draw >= self._REDRAW_SECONDS or self._done == self._steps:
                self._last_draw = now
                self._redraw(self._bar_line(logs, now))
        elif self.update_freq != "epoch" and self._done - self._last_line_step >= self.update_freq:
            self._last_line_step = self._done
            self._write(f"{self._header()} - {self._status(logs, now)}\n")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Finish the epoch's line with the training and validation logs."""
        if self.verbose == 0:
            return
        self._done = self._done or self._steps or 0
        now = time.perf_counter()
        if self._live:
            self._redraw(self._bar_line(logs, now, final=True))
            self._write("\n")
        else:
            self._write(f"{self._header()} - {self._status(logs, now, final=True)}\n")

    def _header(self) -> str:
        total = f"/{self._epochs}" if self._epochs else ""
        return f"Epoch {self._epoch + 1}{total}"

    def _status(self, logs: dict | None, now: float, final: bool = False) -> str:
        elapsed = now - self._start
        rate = self._done / elapsed if elapsed > 0 else float("nan")
        count = f"{self._done}/{self._steps}" if self._steps else f"{self._done}"
        parts = [f"{count} steps", _format_seconds(elapsed), f"{rate:.1f} steps/s"]
        if not final and self._steps and rate > 0:
            parts.append(f"ETA {_format_seconds((self._steps - self._done) / rate)}")
        text = _format_logs(logs)
        return " - ".join([*parts, text] if text else parts)

    def _bar_line(self, logs: dict | None, now: float, final: bool = False) -> str:
        if not self._steps:
            return self._status(logs, now, final)
        width = 30
        filled = min(width, width * self._done // self._steps)
        arrow = ">" if filled < width else ""
        bar = "=" * filled + arrow + "." * (width - filled - len(arrow))
        return f"[{bar}] {self._status(logs, now, final)}"

    def _redraw(self, line: str) -> None:
        padding = " " * max(0, self._width - len(line))  # erase a longer previous line
        self._width = len(line)
        self._write(f"\r{line}{padding}")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


_MAXIMIZED_WORDS = ("acc", "auc", "precision", "recall", "f1", "fbeta", "coverage", "r2")
_MAXIMIZED_WORDS += ("iou", "reward", "return", "score")
_MINIMIZED_WORDS = ("loss", "error", "nll", "kl", "mse", "mae", "mape", "rmse", "ece", "entropy")


def _infer_mode(monitor: str) -> str | None:
    """Direction of a metric from its name, like Keras' `mode="auto"`; None if unknown."""
    name = monitor.removeprefix("val_").lower()
    if any(word in name for word in _MINIMIZED_WORDS):
        return "min"
    if any(word in name for word in _MAXIMIZED_WORDS):
        return "max"
    return None


class EarlyStopping(Callback):
    """Stop training when a monitored quantity has stopped improving.

    Same rule as `keras.callbacks.EarlyStopping`: after each epoch from
    `start_from_epoch` on, a value better than the best by more than `min_delta`
    resets the wait; otherwise, once `patience` epochs passed without
    improvement, `trainer.stop_training` is set. A missing `monitor` key warns
    and skips the epoch, as in Keras.

    State (`wait`, `best`, `best_epoch`, `stopped_epoch`) is saved with each
    checkpoint. The best weights themselves are not: they can be as large as the
    model. After a resume, `restore_best_weights=True` restores them only if the
    best epoch came after the resume; otherwise it keeps the last weights and
    warns, and the best ones are in the checkpoint of epoch `best_epoch` if your
    `CheckpointManager` kept it.

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

    Args:
        monitor: Log key to watch. Defaults to `"val_loss"`.
        patience: Non-negative int; epochs without improvement before stopping.
            Defaults to `0`.
        mode: `"min"`, `"max"` or `"auto"` (inferred from the name: losses and
            errors go down, accuracy/AUC/recall-like metrics go up). Defaults
            to `"auto"`.
        min_delta: Non-negative float; smaller changes do not count as an
            improvement. Defaults to `0.0`.
        restore_best_weights: Whether to load the best epoch's weights (through
            `trainer.get_weights()`/`set_weights()`) when training ends.
            Defaults to `False`.
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
        self.patience = _check_non_negative_int("patience", patience)
        self.mode = check_choice("mode", mode, ("auto", "min", "max"))
        self.min_delta = check_positive_float("min_delta", min_delta, allow_zero=True)
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = _check_non_negative_int("start_from_epoch", start_from_epoch)
        self.baseline = baseline
        self._direction = mode if mode != "auto" else _infer_mode(monitor)
        if self._direction is None:
            raise ValueError(
                f"EarlyStopping cannot tell whether `monitor` should go down or up. Pass "
                f"mode='min' or mode='max'. Received: monitor={monitor!r}, mode='auto'"
            )
        self._reset()

    def _reset(self) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best: float | None = None
        self.best_epoch = 0
        self.best_weights: list | None = None
        self._resumed = False

    def _is_improvement(self, value: float, reference: float | None) -> bool:
        if reference is None:
            return True
        if self._direction == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

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
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None and not self._resumed:
            self.best_weights, self.best_epoch = self.trainer.get_weights(), epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best, self.best_epoch = float(current), epoch
            if self.restore_best_weights:
                self.best_weights = self.trainer.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.trainer.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        """Restore the best weights if asked and they were kept."""
        if self.restore_best_weights and self.best_weights is not None:
            self.trainer.set_weights(self.best_weights)
        elif self.restore_best_weights and self.best is not None:
            warnings.warn(
                f"EarlyStopping cannot restore the best weights (epoch {self.best_epoch}): "
                "they were not kept across the resume. Keeping the last weights; load the "
                f"checkpoint of epoch {self.best_epoch} if it was kept.",
                stacklevel=2,
            )
        self._resumed = False

    def state_dict(self) -> dict[str, Any]:
        """`wait`, `best`, `best_epoch` and `stopped_epoch` (not the best weights)."""
        return {
            "wait": self.wait,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "stopped_epoch": self.stopped_epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue counting from a checkpoint; the next `on_train_begin` keeps it."""
        self.wait = int(state.get("wait", 0))
        self.best = state.get("best")
        self.best_epoch = int(state.get("best_epoch", 0))
        self.stopped_epoch = int(state.get("stopped_epoch", 0))
        self.best_weights = None
        self._resumed = True


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


class NanGuard(Callback):
    """Guard against non-finite losses and gradients.

    Having this callback makes the Trainer build steps that never apply a
    non-finite update (`skips_nonfinite_updates = True`). After each call it
    reads `logs["nonfinite_steps"]` (or, if absent, checks that `loss` is
    finite) and acts by `policy`:

    - `"raise"`: raise `FloatingPointError` naming the step;
    - `"stop"`: set `trainer.stop_training = True` and end `fit`;
    - `"skip"`: carry on; the bad updates were not applied.

    `skipped_steps` counts them all and is saved with each checkpoint.

    Example:

    >>> import types
    >>> trainer = types.SimpleNamespace(stop_training=False, step=7)
    >>> guard = NanGuard(policy="stop")
    >>> guard.set_trainer(trainer)
    >>> guard.on_train_batch_end(6, {"loss": float("nan"), "nonfinite_steps": 1.0})
    >>> trainer.stop_training, guard.skipped_steps
    (True, 1)

    Args:
        policy: One of `"raise"`, `"skip"`, `"stop"`. Defaults to `"raise"`.
    """

    skips_nonfinite_updates = True
    POLICIES = ("raise", "skip", "stop")

    @property
    def epoch_sync(self) -> bool:
        """`"raise"` and `"stop"` must act before the next epoch runs; `"skip"` only counts."""
        return self.policy != "skip"

    def __init__(self, policy: str = "raise") -> None:
        super().__init__()
        self.policy = check_choice("policy", policy, self.POLICIES)
        self.skipped_steps = 0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Count non-finite steps and apply the policy."""
        logs = logs or {}
        if "nonfinite_steps" in logs:
            bad = int(logs["nonfinite_steps"])
        else:
            bad = int(not math.isfinite(logs.get("loss", 0.0)))
        if not bad:
            return
        self.skipped_steps += bad
        if self.policy == "stop":
            self.trainer.stop_training = True
        elif self.policy == "raise":
            step = getattr(self.trainer, "step", None)
            epoch = getattr(self.trainer, "epoch", None)
            raise FloatingPointError(
                f"Non-finite loss or gradients in {bad} step(s) of the call ending at global "
                f"step {step} (epoch {epoch}, batch {batch}); the update was not applied. "
                f"Received: loss={logs.get('loss')!r}, grad_norm={logs.get('grad_norm')!r}. "
                "Use NanGuard(policy='skip') to carry on or policy='stop' to end training."
            )

    def state_dict(self) -> dict[str, Any]:
        """The count of skipped steps."""
        return {"skipped_steps": self.skipped_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue counting skipped steps."""
        self.skipped_steps = int(state.get("skipped_steps", 0))


def _takes_current_lr(schedule: Callable) -> bool:
    try:
        parameters = inspect.signature(schedule).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    kinds = [p.kind for p in parameters]
    return inspect.Parameter.VAR_POSITIONAL in kinds or sum(k in positional for k in kinds) >= 2


class LearningRateScheduler(Callback):
    """Set `trainer.optimizer.learning_rate` at the start of each epoch.

    `schedule` is a function `epoch -> lr` (or `(epoch, current_lr) -> lr`, as in
    `keras.callbacks.LearningRateScheduler`), or a
    `keras.optimizers.schedules.LearningRateSchedule` evaluated at the epoch
    index, so its "steps" count epochs here. To change the rate at every step
    instead, pass the schedule to the optimizer directly
    (`keras.optimizers.Adam(learning_rate=schedule)`); such an optimizer's rate
    cannot be set by this callback (Keras raises `TypeError`).

    Example:

    >>> import types, keras
    >>> optimizer = keras.optimizers.SGD(learning_rate=0.1)
    >>> scheduler = LearningRateScheduler(lambda epoch: 0.1 * 0.5**epoch)
    >>> scheduler.set_trainer(types.SimpleNamespace(optimizer=optimizer))
    >>> scheduler.on_epoch_begin(2)
    >>> round(float(optimizer.learning_rate), 6)
    0.025

    Args:
        schedule: Callable as above.
    """

    def __init__(
        self, schedule: Callable[..., float] | keras.optimizers.schedules.LearningRateSchedule
    ) -> None:
        super().__init__()
        if not callable(schedule):
            raise TypeError(
                "Argument `schedule` must be a function of the epoch or a `keras.optimizers."
                f"schedules.LearningRateSchedule`. Received: schedule={schedule!r}"
            )
        self.schedule = schedule
        is_keras_schedule = isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule)
        self._pass_lr = not is_keras_schedule and _takes_current_lr(schedule)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        """Compute this epoch's learning rate and set it on the optimizer."""
        optimizer = self.trainer.optimizer
        if self._pass_lr:
            value = self.schedule(epoch, float(optimizer.learning_rate))
        else:
            value = self.schedule(epoch)
        learning_rate = float(value)
        if not math.isfinite(learning_rate) or learning_rate < 0:
            raise ValueError(
                "The learning-rate `schedule` must return a finite non-negative float. "
                f"Received: learning_rate={learning_rate!r} at epoch={epoch}"
            )
        optimizer.learning_rate = learning_rate
