"""Built-in callbacks: history, progress, early stopping, NaN guard, loggers, LR schedule.

`NanGuard` lives in `nan_guard.py` and is re-exported here.

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
from collections.abc import Callable
from typing import Any, TextIO

import keras

from tfcraft._validation import check_choice
from tfcraft.training.callbacks_base import Callback, CallbackList
from tfcraft.training.early_stopping import EarlyStopping
from tfcraft.training.loggers import CSVLogger, JSONLLogger, TensorBoard, check_update_freq
from tfcraft.training.nan_guard import NanGuard

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
        self.update_freq = check_update_freq(update_freq)
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
