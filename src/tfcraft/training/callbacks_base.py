"""The callback contract: `Callback` hooks and the `CallbackList` that fans them out.

A callback sees the `Trainer` as `self.trainer` (set by `set_trainer`) and may
set `self.trainer.stop_training = True` to end `fit` after the current
batch/epoch, as in Keras. Callbacks that hold state between epochs implement
`state_dict()` / `load_state_dict(state)` with JSON-serialisable values; the
Trainer saves that state with every checkpoint and restores it on resume.

Batch hooks receive the logs of the last finished step. When the Trainer runs
several steps per graph call, `on_train_batch_end` fires once per call with
`batch` set to the index of the last step of that call.

A callback that only records logs (history, progress, files) sets
`epoch_sync = False`; then, for tiny in-memory data, the Trainer may run
several epochs in one graph call and replay their hooks afterwards. The default
`True` keeps the Keras contract: the hooks run between epochs, on the model as
it is at that point. A callback whose epoch-end rule can run inside the graph
(`EarlyStopping`) keeps `epoch_sync = True` and also implements
`graph_epoch_end(epoch, logs) -> stop` on tensors, naming the logs it reads in
`graph_logs_needed`; the Trainer then runs that rule in the graph and does not
call its `on_epoch_end` again when it replays those epochs. Variables a
callback keeps (e.g. best weights) are saved with each checkpoint when
`checkpoint_variables()` returns them.

Example:

>>> class CountEpochs(Callback):
...     def __init__(self):
...         super().__init__()
...         self.epochs_seen = 0
...     def on_epoch_end(self, epoch, logs=None):
...         self.epochs_seen += 1
...     def state_dict(self):
...         return {"epochs_seen": self.epochs_seen}
...     def load_state_dict(self, state):
...         self.epochs_seen = state["epochs_seen"]
>>> CountEpochs().state_dict()
{'epochs_seen': 0}
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["Callback", "CallbackList"]

_HOOKS = (
    "on_train_begin",
    "on_train_end",
    "on_epoch_begin",
    "on_epoch_end",
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_test_begin",
    "on_test_end",
    "on_predict_begin",
    "on_predict_end",
)


class Callback:
    """Base class: override the hooks you need; every hook does nothing by default.

    Attributes:
        epoch_sync: Whether the hooks must run between epochs (they read or
            change the model, optimizer or training state). `False` for
            callbacks that only record logs.
    """

    epoch_sync = True
    graph_logs_needed: tuple[str, ...] | None = None  # set with `graph_epoch_end`

    def __init__(self) -> None:
        self.trainer = None

    def set_trainer(self, trainer) -> None:
        """Attach the Trainer; called by `CallbackList` before training starts."""
        self.trainer = trainer

    def on_train_begin(self, logs: dict | None = None) -> None:
        """Called once before the first epoch."""

    def on_train_end(self, logs: dict | None = None) -> None:
        """Called once after the last epoch (also after an early stop)."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        """Called at the start of each epoch (0-based `epoch`)."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Called at the end of each epoch with training and `val_` logs."""

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        """Called before a training step (or a graph call of several steps)."""

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Called after a training step with its logs (floats)."""

    def on_test_begin(self, logs: dict | None = None) -> None:
        """Called before `evaluate` (also the validation pass of `fit`)."""

    def on_test_end(self, logs: dict | None = None) -> None:
        """Called after `evaluate` with its results."""

    def on_predict_begin(self, logs: dict | None = None) -> None:
        """Called before `predict`."""

    def on_predict_end(self, logs: dict | None = None) -> None:
        """Called after `predict`."""

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state saved with each checkpoint; stateless by default."""
        return {}

    def checkpoint_variables(self) -> dict:
        """`tf.Variable`s (nested in dicts/lists) saved with each checkpoint; none by default."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""


class CallbackList(Callback):
    """Calls each hook on every callback, in order."""

    def __init__(self, callbacks: Iterable[Callback] = ()) -> None:
        super().__init__()
        self.callbacks = list(callbacks)
        for callback in self.callbacks:
            if not isinstance(callback, Callback):
                raise TypeError(
                    "Every callback must be a `tfcraft.training.Callback`. "
                    f"Received: {callback!r} of type {type(callback).__name__}"
                )

    def set_trainer(self, trainer) -> None:
        """Attach the Trainer to every callback."""
        super().set_trainer(trainer)
        for callback in self.callbacks:
            callback.set_trainer(trainer)

    def keys(self) -> list[str]:
        """A stable key per callback: its class name, `#k` for the k-th repeat of a class.

        Keys do not depend on positions, so a resumed run may add or drop other
        callbacks (a progress bar, a stop-after-N test callback) and still find each
        callback's saved state.
        """
        seen: dict[str, int] = {}
        keys = []
        for callback in self.callbacks:
            name = type(callback).__name__
            count = seen.get(name, 0)
            seen[name] = count + 1
            keys.append(name if count == 0 else f"{name}#{count}")
        return keys

    def state_dict(self) -> dict[str, Any]:
        """State of every callback, keyed as in `keys()`."""
        return {
            key: callback.state_dict()
            for key, callback in zip(self.keys(), self.callbacks, strict=True)
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore each callback's state from the entry with its key, if any."""
        for key, callback in zip(self.keys(), self.callbacks, strict=True):
            if key in state:
                callback.load_state_dict(state[key])


def _fan_out(hook: str):
    def method(self, *args, **kwargs):
        for callback in self.callbacks:
            getattr(callback, hook)(*args, **kwargs)

    method.__name__ = hook
    method.__doc__ = f"Call `{hook}` on every callback."
    return method


for _hook in _HOOKS:
    setattr(CallbackList, _hook, _fan_out(_hook))
